"""Capturing an instance as an image (Wakame-vdc's instance backup), the API side.

The request only records: a new image `creating`, owned by the instance's account, and a
capture job in the instance's job order (a start asked afterwards waits for the copy). The
job (capture_jobs.py) does the host side. Only a stopped instance is captured: a running
guest's disk changes under the copy, and what it has in memory is not on the disk yet.
"""

from __future__ import annotations

from sqlmodel import Session

from app.config import Settings
from app.errors import Conflict
from app.ids import new_id
from app.models import Account, Image, Instance
from app.models.image import ImageCapture, ImageKind, ImageState
from app.models.instance import InstanceState
from app.services import access, jobs, quotas
from app.services.images.images import may_publish

# The job's kind says whether the copy gets the `image prepare` steps (a job has no payload).
CAPTURE = "capture"
CAPTURE_PREPARED = "capture_prepared"


def request_capture(
    session: Session, settings: Settings, account: Account, instance_id: str, body: ImageCapture
) -> Image:
    instance = access.get(session, account, Instance, instance_id)
    may_publish(account, body.is_public)
    if instance.state != InstanceState.stopped or instance.host_node_id is None:
        raise Conflict(
            f"instance {instance.id} is {instance.state}: only a stopped instance can be "
            "captured (a running guest's disk changes while it is copied); stop it first"
        )
    source = session.get(Image, instance.image_id)
    assert source is not None, "an instance's image row outlives it"
    quotas.check(session, settings, instance.account_id, images=1)
    image_id = new_id("image")
    image = Image(
        id=image_id,
        account_id=instance.account_id,  # an admin's capture is still the owner's image
        display_name=body.display_name or image_id,
        description=body.description or f"captured from {instance.id}",
        arch=source.arch,
        is_public=body.is_public,
        state=ImageState.creating,
        state_reason="waiting for a worker",
        progress=0,
        kind=ImageKind.disk,
        source="capture",
        # A copy made with qemu-img convert to qcow2; sizes and digest once it is here.
        format="qcow2",
        virtual_size=0,
        file_size=0,
        sha256="",
        file_name=f"{image_id}.qcow2",
        # What the captured system booted with: its own init may look for the drive.
        metadata_drive=instance.metadata_drive,
    )
    session.add(image)
    kind = CAPTURE_PREPARED if body.prepare else CAPTURE
    jobs.enqueue(session, kind, instance.id, image_id=image.id)
    # Read back before the commit: the answer is the image as this request made it, even
    # when a worker (woken by the commit) has already started on it.
    session.flush()
    session.refresh(image)
    session.commit()
    return image

"""Volume use cases for the API and the CLI: create, read, rename, attach, detach, delete.

As with instances, the API never waits for libvirt: it checks the request, records the
wanted state and a job in one transaction, and answers 202. The job worker does the host
side (app/services/storage/volume_jobs.py). State changes are compare-and-set UPDATEs, so two
requests racing for one volume (or one device) cannot both win.
"""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.config import Settings
from app.errors import BadRequest, Conflict
from app.ids import new_id
from app.models import Account, Image, Instance, Volume
from app.models.common import utcnow
from app.models.image import ImageKind, ImageState
from app.models.instance import GONE_STATES, InstanceState
from app.models.volume import (
    DATA_DEVICES,
    GIB,
    METADATA_DRIVE_DEVICE,
    LaunchVolume,
    VolumeAttach,
    VolumeCreate,
    VolumeState,
    VolumeUpdate,
    volume_devices,
)
from app.services import access, inserts, jobs, placement, quotas
from app.services.listing import PageRequest
from app.services.state_changes import compare_and_set

SORTABLE = ("created_at", "updated_at", "display_name", "state", "size", "id")
# A volume is attached or detached only while its instance stands still.
ATTACHABLE_INSTANCE = (InstanceState.running, InstanceState.stopped)
DETACHABLE_INSTANCE = (InstanceState.running, InstanceState.stopped, InstanceState.error)
_DEVICE_ATTEMPTS = 8


def list_volumes(
    session: Session, account: Account, page: PageRequest, **filters: object
) -> tuple[list[Volume], int]:
    return access.page(session, account, Volume, page, SORTABLE, filters)


def volumes_of_instance(session: Session, account: Account, instance_id: str) -> list[Volume]:
    """The disks an instance has (root first), not those it once had."""
    instance = access.get(session, account, Instance, instance_id)
    return list(
        session.exec(
            select(Volume)
            .where(Volume.instance_id == instance.id)
            .where(col(Volume.state) != VolumeState.deleted)
            .order_by(col(Volume.device))
        )
    )


# --- create, rename, delete ----------------------------------------------------------------


def create_volume(
    session: Session, settings: Settings, account: Account, body: VolumeCreate
) -> Volume:
    image = access.get(session, account, Image, body.image_id) if body.image_id else None
    if image is not None:
        usable_image(image)
        if image.kind == ImageKind.iso:
            raise BadRequest(
                f"image {image.id} is an ISO (an installer CD): it is only ever a CD-ROM; "
                "launch an instance from it instead"
            )
    size = _checked_size(settings, body.size_bytes(), image)
    if body.instance_id is not None:
        instance = access.get(session, account, Instance, body.instance_id)
        if instance.host_node_id is None or instance.state in GONE_STATES:
            raise Conflict(f"instance {instance.id} is {instance.state}: it has no host")
        host_id = instance.host_node_id
    elif body.host_node_id is not None:
        host_id = placement.usable_host(session, body.host_node_id).id
    else:
        host_id = placement.host_for_volume(session).id
    quotas.check(session, settings, account.id, volume_gib=size / GIB)
    volume = Volume(
        id=new_id("volume"),
        account_id=account.id,
        display_name=body.display_name,
        size=size,
        image_id=image.id if image else None,
        host_node_id=host_id,
    )
    session.add(volume)
    jobs.enqueue(session, "volume_create", None, volume_id=volume.id)
    session.commit()
    return volume


def update_volume(session: Session, account: Account, volume_id: str, body: VolumeUpdate) -> Volume:
    volume = access.get(session, account, Volume, volume_id)
    if body.display_name is not None:
        volume.display_name = body.display_name
    if body.delete_on_termination is not None:
        volume.delete_on_termination = body.delete_on_termination
    volume.updated_at = utcnow()
    session.add(volume)
    session.commit()
    return volume


def delete_volume(session: Session, account: Account, volume_id: str) -> Volume:
    """Idempotent for a volume already being deleted or deleted."""
    volume = access.get(session, account, Volume, volume_id)
    if volume.state in (VolumeState.deleting, VolumeState.deleted):
        return volume
    if volume.instance_id is not None and volume.state != VolumeState.available:
        what = "the root disk" if volume.boot else f"attached as {volume.device}"
        raise Conflict(
            f"volume {volume.id} is {what} of instance {volume.instance_id}: "
            + ("terminate the instance" if volume.boot else "detach it first")
        )
    _compare_and_set(
        session, volume, (VolumeState.available, VolumeState.error), VolumeState.deleting
    )
    jobs.enqueue(session, "volume_delete", None, volume_id=volume.id)
    session.refresh(volume)  # the state this request set (a worker may be quicker)
    session.commit()
    return volume


# --- attach and detach ---------------------------------------------------------------------


def attach_volume(session: Session, account: Account, volume_id: str, body: VolumeAttach) -> Volume:
    volume = access.get(session, account, Volume, volume_id)
    if volume.state != VolumeState.available:
        where = f" to instance {volume.instance_id}" if volume.instance_id else ""
        raise Conflict(
            f"volume {volume.id} is {volume.state}{where}; only an available one attaches"
        )
    instance = access.get(session, account, Instance, body.instance_id)
    if instance.account_id != volume.account_id:  # only an admin's key can see both
        raise Conflict(
            f"volume {volume.id} belongs to {volume.account_id} and instance {instance.id} "
            f"to {instance.account_id}: a volume attaches within its account"
        )
    if instance.state not in ATTACHABLE_INSTANCE:
        raise Conflict(
            f"instance {instance.id} is {instance.state}; volumes attach to a running or "
            "stopped instance"
        )
    if instance.host_node_id != volume.host_node_id:
        raise Conflict(
            f"volume {volume.id} is on host {volume.host_node_id} and instance {instance.id} on "
            f"{instance.host_node_id}: create the volume with instance_id={instance.id}"
        )
    for _ in range(_DEVICE_ATTEMPTS):
        device = _free_device(session, instance, body.device)
        savepoint = session.begin_nested()
        try:
            won = _compare_and_set(
                session,
                volume,
                (VolumeState.available,),
                VolumeState.attaching,
                instance_id=instance.id,
                device=device,
            )
        except IntegrityError:  # another request took the device meanwhile: pick again
            savepoint.rollback()
            if body.device is not None:
                raise Conflict(f"device {body.device} of instance {instance.id} is taken") from None
            continue
        savepoint.commit()
        if not won:
            session.rollback()
            raise Conflict(f"volume {volume.id} was attached by another request meanwhile")
        jobs.enqueue(session, "attach", instance.id, volume_id=volume.id)
        session.refresh(volume)  # the state this request set (a worker may be quicker)
        session.commit()
        return volume
    raise Conflict(f"could not pick a device on instance {instance.id}: too many attaches, retry")


def detach_volume(session: Session, account: Account, volume_id: str) -> Volume:
    volume = access.get(session, account, Volume, volume_id)
    if volume.boot:
        raise Conflict(
            f"volume {volume.id} is the root disk of instance {volume.instance_id}; it cannot "
            "be detached (terminate the instance instead)"
        )
    # `error` with an instance: an earlier detach timed out; asking again tries again.
    if volume.instance_id is None or volume.state not in (VolumeState.attached, VolumeState.error):
        raise Conflict(f"volume {volume.id} is {volume.state}, not attached")
    instance = session.get(Instance, volume.instance_id)
    assert instance is not None
    if instance.state not in DETACHABLE_INSTANCE:
        raise Conflict(
            f"instance {instance.id} is {instance.state}; detach when it is running or stopped"
        )
    if not _compare_and_set(
        session, volume, (VolumeState.attached, VolumeState.error), VolumeState.detaching
    ):
        raise Conflict(f"volume {volume.id} changed meanwhile; look at it again")
    jobs.enqueue(session, "detach", instance.id, volume_id=volume.id)
    session.refresh(volume)  # the state this request set (a worker may be quicker)
    session.commit()
    return volume


# --- with a launch -------------------------------------------------------------------------


def usable_image(image: Image) -> Image:
    """An image an instance or a volume may be made from now: one whose file is complete
    (not an image still being captured, nor one whose capture failed)."""
    if image.state != ImageState.available:
        why = f" ({image.state_reason})" if image.state_reason else ""
        raise Conflict(
            f"image {image.id} is {image.state}{why}: only an available image can be used"
        )
    return image


def add_launch_volumes(
    session: Session,
    settings: Settings,
    instance: Instance,
    image: Image,
    extra: list[LaunchVolume],
) -> list[Volume]:
    """The root disk as a boot volume (vda), plus the blank volumes asked for (vdb, ...,
    or vdc, ... after a metadata drive), all `attaching` until the launch job has built
    them into the domain."""
    root = Volume(
        id=new_id("volume"),
        account_id=instance.account_id,
        size=root_disk_size(settings, image, instance.root_disk_size),
        # From an ISO, the root disk is blank: the image is its CD, not its base.
        image_id=None if image.kind == ImageKind.iso else image.id,
        host_node_id=instance.host_node_id,
        state=VolumeState.attaching,
        instance_id=instance.id,
        device="vda",
        boot=True,
        delete_on_termination=True,
    )
    made = [root]
    for wanted, device in zip(extra, volume_devices(instance.metadata_drive), strict=False):
        made.append(
            Volume(
                id=new_id("volume"),
                account_id=instance.account_id,
                display_name=wanted.display_name,
                size=_checked_size(settings, wanted.size_bytes(), None),
                host_node_id=instance.host_node_id,
                state=VolumeState.attaching,
                instance_id=instance.id,
                device=device,
                delete_on_termination=wanted.delete_on_termination,
            )
        )
    inserts.insert(session, *made)
    return made


def root_disk_size(settings: Settings, image: Image, root_disk_size_gib: int) -> int:
    """Bytes of an instance's root disk: its image's virtual size, grown to the size its
    type (or launch) asks for; from an ISO, a blank disk of exactly that size. Refused over
    the limit every disk obeys (a tiny qcow2 can claim a petabyte)."""
    if image.kind == ImageKind.iso:
        if root_disk_size_gib <= 0:
            raise BadRequest(
                f"image {image.id} is an ISO (an installer CD): give root_disk_size, the GiB "
                "of the blank disk to install onto"
            )
        size, why = root_disk_size_gib * GIB, "as asked"
    else:
        size = max(image.virtual_size, root_disk_size_gib * GIB)
        why = f"image {image.id} has a virtual size of {image.virtual_size} bytes"
    if size > settings.max_volume_size * GIB:
        raise BadRequest(
            f"the root disk would be {size / GIB:.0f} GiB ({why}), over the limit of "
            f"{settings.max_volume_size} GiB for any disk (VDC_MAX_VOLUME_SIZE)"
        )
    return size


def launch_disks_size(
    settings: Settings, image: Image, root_disk_size_gib: int, extra: list[LaunchVolume]
) -> int:
    """Bytes of the disks add_launch_volumes will make (for the account's volume quota)."""
    sizes = [_checked_size(settings, wanted.size_bytes(), None) for wanted in extra]
    return root_disk_size(settings, image, root_disk_size_gib) + sum(sizes[: len(DATA_DEVICES)])


# --- helpers -------------------------------------------------------------------------------


def _checked_size(settings: Settings, size: int | None, image: Image | None) -> int:
    if size is None:
        assert image is not None, "validated: a size or an image"
        size = image.virtual_size
    if image is not None and size < image.virtual_size:
        raise BadRequest(
            f"size {size} bytes is smaller than image {image.id} ({image.virtual_size} bytes)"
        )
    if size > settings.max_volume_size * GIB:
        raise BadRequest(
            f"volumes are limited to {settings.max_volume_size} GiB (VDC_MAX_VOLUME_SIZE)"
        )
    return size


def _free_device(session: Session, instance: Instance, wanted: str | None) -> str:
    used = set(session.exec(select(Volume.device).where(Volume.instance_id == instance.id)))
    if wanted is not None:
        if instance.metadata_drive and wanted == METADATA_DRIVE_DEVICE:
            raise Conflict(
                f"device {wanted} of instance {instance.id} is its metadata drive; "
                "choose another device or leave it out"
            )
        if wanted in used:
            raise Conflict(f"device {wanted} of instance {instance.id} is taken")
        return wanted
    for device in volume_devices(instance.metadata_drive):
        if device not in used:
            return device
    first, last = volume_devices(instance.metadata_drive)[0], DATA_DEVICES[-1]
    raise Conflict(f"instance {instance.id} has no free device left ({first}..{last} are in use)")


def _compare_and_set(
    session: Session,
    volume: Volume,
    expected: tuple[VolumeState, ...],
    new: VolumeState,
    **fields: object,
) -> bool:
    """A request's state change, in the request's transaction (the reason is cleared)."""
    return compare_and_set(
        session, Volume, volume.id, expected, new, **{"state_reason": "", **fields}
    )

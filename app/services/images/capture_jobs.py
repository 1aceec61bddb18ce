"""What the job worker does to capture an instance as an image, on any host, through libvirt
alone:

1. on the instance's host, a standalone copy of its root disk beside it (libvirt's
   storageVolCreateXMLFrom: `qemu-img convert` merges the image it is an overlay on);
2. that copy brought to the image store over libvirt's download stream, hashed as it
   arrives, then deleted from the host;
3. if asked, the `image prepare` steps on it (prepare.py);
4. checked as any image is (qemu-img info: a qcow2, no backing file) and recorded:
   `creating -> available`, with its digest, format and sizes.

Each step can run again: the copy on the host has a fixed name (a leftover is replaced),
the file here is a `.partial-*` until the last step moves it into place. A worker that dies
mid-way loses its lease and another runs the job again from the top; a job that fails for
good ends the image in `error` with the reason. The instance is read, never changed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import col

from app.errors import Conflict, InvalidImage
from app.models import HostNode, Image, Instance, Job
from app.models.common import utcnow
from app.models.image import ImageState
from app.models.instance import GONE_STATES
from app.models.volume import GIB
from app.services import host_uris, quotas
from app.services.hypervisors import driver_for
from app.services.images import disk_images, free_space, images, prepare
from app.services.images.capture import CAPTURE, CAPTURE_PREPARED
from app.services.jobs_context import JobContext
from app.services.storage.pools import (
    INSTANCE_POOL,
    capture_volume_name,
    pool_spec,
    root_volume_name,
)
from hypervisor.driver import HostDriver
from hypervisor.errors import HypervisorError

log = logging.getLogger("vdc.capture")
KINDS = (CAPTURE, CAPTURE_PREPARED)
_PROGRESS_EVERY = 1.0  # seconds between progress updates of the image row
# How far along each step is (percent), as the image's progress shows it.
_DOWNLOAD_FROM, _DOWNLOAD_TO, _PREPARING, _CHECKING = 5, 90, 90, 95


def run(ctx: JobContext, job: Job) -> None:
    with ctx.session() as session:
        image = session.get(Image, job.image_id)
        instance = session.get(Instance, job.instance_id)
        host = session.get(HostNode, instance.host_node_id) if instance else None
    if image is None or image.state != ImageState.creating:
        return  # finished by an earlier run of this job
    if instance is None or instance.state in GONE_STATES or host is None:
        raise Conflict(f"instance {job.instance_id} is gone: nothing to capture")
    driver = driver_for(host)
    guest = driver.find_guest(instance.id)
    if guest is not None and guest.is_running():
        raise Conflict(
            f"instance {instance.id} was started before its disk was copied: capture a "
            "stopped instance"
        )
    _step(ctx, image.id, f"copying the root disk on host {host.name}", 0)
    driver.ensure_pool(pool_spec(ctx.settings, INSTANCE_POOL))
    copy_name = capture_volume_name(image.id)
    driver.copy_volume_flat(INSTANCE_POOL, root_volume_name(instance.id), copy_name)
    with images.partial_file(ctx.settings) as partial:
        try:
            _step(ctx, image.id, f"bringing the copy from host {host.name}", _DOWNLOAD_FROM)
            digest = _download(ctx, driver, image.id, copy_name, partial)
        finally:
            driver.delete_volume(INSTANCE_POOL, copy_name)
        info = disk_images.inspect(partial, ctx.settings.qemu_img)
        if job.kind == CAPTURE_PREPARED:
            _step(ctx, image.id, "preparing it (image prepare)", _PREPARING)
            _prepare(ctx, image.id, partial, info)
            info = disk_images.inspect(partial, ctx.settings.qemu_img)
            digest = disk_images.file_digest(partial)
        _step(ctx, image.id, "checking and recording it", _CHECKING)
        _record(ctx, image.id, partial, info, digest)
    log.info("image %s captured from %s on host %s", image.id, instance.id, host.name)


def _download(ctx: JobContext, driver: HostDriver, image_id: str, name: str, partial: Path) -> str:
    """The copy into `partial` (a new file, 0640, fsynced); its sha256."""
    digest = hashlib.sha256()
    reported = time.monotonic()

    def progress(received: int, total: int) -> None:
        nonlocal reported
        if time.monotonic() - reported >= _PROGRESS_EVERY and total:
            share = _DOWNLOAD_FROM + (_DOWNLOAD_TO - _DOWNLOAD_FROM) * received // total
            _set(ctx, image_id, progress=share)
            reported = time.monotonic()

    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    with os.fdopen(fd, "wb") as writer:

        def sink(data: bytes) -> None:
            if writer.tell() + len(data) > ctx.settings.max_image_size:
                raise InvalidImage(
                    f"the copy is over the limit of {ctx.settings.max_image_size} bytes "
                    "(VDC_MAX_IMAGE_SIZE)"
                )
            digest.update(data)
            try:
                writer.write(data)
            except OSError as error:
                free_space.raise_if_full(error, partial, writer.tell() + len(data), at_least=True)
                raise

        driver.download_file(INSTANCE_POOL, name, sink, progress)
        writer.flush()
        os.fsync(writer.fileno())
    return digest.hexdigest()


def _prepare(ctx: JobContext, image_id: str, partial: Path, info: disk_images.DiskInfo) -> None:
    """The seed's post-install tweaks on the copy; vdc-init where no cloud-init would read
    the metadata service. An image they cannot be made in ends in error, saying why."""
    options = prepare.PrepareOptions(install_init=True, unless_cloud_init=True)
    report = prepare.prepare(ctx.settings, partial, options, info)
    for line in (*report.changes, *report.notes, *report.warnings):
        log.info("image %s: prepare: %s", image_id, line)


def _record(
    ctx: JobContext, image_id: str, partial: Path, info: disk_images.DiskInfo, digest: str
) -> None:
    """The image's facts and state, and its file moved into place, in one transaction."""
    if info.format != "qcow2":
        raise InvalidImage(f"the copy is {info.format}, not qcow2")
    with ctx.session() as session:
        image = session.get(Image, image_id)
        if image is None or image.state != ImageState.creating:
            return
        quotas.check(session, ctx.settings, image.account_id, image_gib=info.file_size / GIB)
        image.format, image.virtual_size = info.format, info.virtual_size
        image.file_size, image.sha256 = info.file_size, digest
        image.state, image.state_reason, image.progress = ImageState.available, "", 100
        image.updated_at = utcnow()
        session.add(image)
        images.commit_with_file(session, partial, ctx.settings.image_dir / image.file_name)


def fail(ctx: JobContext, job: Job, reason: str) -> None:
    """The capture failed for good: its image goes to `error` with the reason (the host
    named, never its URI), and the copy on the host goes if it is still there."""
    host = _host_of(ctx, job)
    _set(
        ctx,
        job.image_id or "",
        state=ImageState.error,
        state_reason=host_uris.hide_host(reason, host)[:2048],
    )
    if host is not None and job.image_id:
        try:
            driver_for(host).delete_volume(INSTANCE_POOL, capture_volume_name(job.image_id))
        except HypervisorError as error:  # the doctor finds it later
            log.warning("the copy for %s stays on host %s: %s", job.image_id, host.name, error)


def _host_of(ctx: JobContext, job: Job) -> HostNode | None:
    with ctx.session() as session:
        instance = session.get(Instance, job.instance_id) if job.instance_id else None
        if instance is None or instance.host_node_id is None:
            return None
        return session.get(HostNode, instance.host_node_id)


def _step(ctx: JobContext, image_id: str, what: str, progress: int) -> None:
    _set(ctx, image_id, state_reason=what, progress=progress)


def _set(ctx: JobContext, image_id: str, **values: object) -> None:
    """Changes the image while it is being created (never one finished meanwhile)."""
    with ctx.engine.begin() as connection:
        connection.execute(
            sa.update(Image)
            .where(col(Image.id) == image_id)
            .where(col(Image.state) == ImageState.creating)
            .values(updated_at=utcnow(), **values)
        )

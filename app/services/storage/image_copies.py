"""Images on the hosts that run them: uploaded once per host, through libvirt's volume
upload stream, the first time an instance (or a volume) of the image needs it there.

The image_copies row is the lock. The first job inserts it (`uploading`, under a lease it
renews while it sends), uploads, and sets it `available`; a job that finds a live
`uploading` row waits for it. A copy that is not `available` is never used as a backing
file: a failed upload, or one whose job died (its lease ran out), is started over. The
host checks the size it received before the copy counts (hypervisor/streams.py).

On the host vdc runs on the image pool is the image store: no copy, no row.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.models import HostNode, Image, ImageCopy
from app.models.common import utcnow
from app.models.image_copy import CopyState
from app.services.hypervisors import driver_for
from app.services.jobs_context import JobContext
from app.services.storage.pools import IMAGE_POOL, keeps_files_here, pool_spec
from hypervisor.errors import HypervisorError, NotFoundOnHost

log = logging.getLogger("vdc.images")
LEASE_SECONDS = 60.0
WAIT_SECONDS = 3600.0  # for another job's upload of the same image to the same host


def ensure_copy(ctx: JobContext, host: HostNode, image: Image, owner: str) -> str:
    """The path of the image on the host, uploading it there first if it is not there."""
    driver = driver_for(host)
    driver.ensure_pool(pool_spec(ctx.settings, IMAGE_POOL))
    if keeps_files_here(driver):
        return str(ctx.settings.image_dir / image.file_name)
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        copy = _claim_or_read(ctx, host, image, owner)
        if copy.state == CopyState.available:
            try:
                return driver.volume_path(IMAGE_POOL, copy.volume)
            except NotFoundOnHost:  # removed behind vdc's back: send it again
                _reset(ctx, image.id, host.id)
                continue
        if copy.lease_owner == owner:
            return _upload(ctx, host, image, owner)
        if time.monotonic() > deadline:
            raise HypervisorError(f"the upload of {image.id} to host {host.name} takes too long")
        time.sleep(0.5)  # another job is sending it: its copy will do for this one too


def _claim_or_read(ctx: JobContext, host: HostNode, image: Image, owner: str) -> ImageCopy:
    """The copy's row, taken over by `owner` unless it is available or another job's live
    upload."""
    now = utcnow()
    lease = now + timedelta(seconds=LEASE_SECONDS)
    with ctx.session() as session:
        try:
            session.add(
                ImageCopy(
                    image_id=image.id,
                    host_node_id=host.id,
                    volume=image.file_name,
                    sha256=image.sha256,
                    size=image.file_size,
                    lease_owner=owner,
                    lease_expires_at=lease,
                )
            )
            session.commit()
        except IntegrityError:
            session.rollback()
        # Take over a failed copy, or one whose uploader stopped renewing (it died).
        session.execute(
            sa.update(ImageCopy)
            .where(col(ImageCopy.image_id) == image.id)
            .where(col(ImageCopy.host_node_id) == host.id)
            .where(
                sa.or_(
                    col(ImageCopy.state) == CopyState.failed,
                    sa.and_(
                        col(ImageCopy.state) == CopyState.uploading,
                        col(ImageCopy.lease_expires_at) < now,
                    ),
                )
            )
            .values(state=CopyState.uploading, lease_owner=owner, lease_expires_at=lease)
        )
        session.commit()
        return _row(session, image.id, host.id)


def _upload(ctx: JobContext, host: HostNode, image: Image, owner: str) -> str:
    source = ctx.settings.image_dir / image.file_name
    renewed = time.monotonic()

    def progress(sent: int, total: int) -> None:
        nonlocal renewed
        if time.monotonic() - renewed > LEASE_SECONDS / 3:
            _set(ctx, image.id, host.id, owner, lease_expires_at=_lease())
            renewed = time.monotonic()

    started = time.monotonic()
    try:
        path = driver_for(host).upload_file(IMAGE_POOL, image.file_name, source, progress)
    except BaseException as error:
        _set(ctx, image.id, host.id, owner, state=CopyState.failed, error=str(error)[:1024])
        raise
    _set(ctx, image.id, host.id, owner, state=CopyState.available, lease_owner=None, error="")
    log.info(
        "image %s uploaded to host %s (%d bytes in %.1fs)",
        image.id,
        host.name,
        image.file_size,
        time.monotonic() - started,
    )
    return path


def copies_of(session: Session, image_id: str) -> list[ImageCopy]:
    return list(
        session.exec(
            select(ImageCopy)
            .where(ImageCopy.image_id == image_id)
            .order_by(col(ImageCopy.host_node_id))
        )
    )


def forget_image(session: Session, image_id: str) -> None:
    """The image is being deleted: its copies go from their hosts now if the hosts answer;
    those that do not are marked `deleting` and removed when their host is back
    (remove_leftovers, from the sync)."""
    for copy in copies_of(session, image_id):
        host = session.get(HostNode, copy.host_node_id)
        try:
            if host is not None:
                driver_for(host).delete_volume(IMAGE_POOL, copy.volume)
        except HypervisorError as error:
            log.warning(
                "host %s keeps a copy of %s for now: %s", copy.host_node_id, image_id, error
            )
            copy.state, copy.error = CopyState.deleting, str(error)[:1024]
            session.add(copy)
            continue
        session.delete(copy)


def remove_leftovers(session: Session, host: HostNode) -> None:
    """Deletes the copies of deleted images from a host that answers again."""
    doomed = session.exec(
        select(ImageCopy)
        .where(ImageCopy.host_node_id == host.id)
        .where(ImageCopy.state == CopyState.deleting)
    ).all()
    for copy in doomed:
        driver_for(host).delete_volume(IMAGE_POOL, copy.volume)
        session.delete(copy)
    session.commit()


def _reset(ctx: JobContext, image_id: str, host_id: str) -> None:
    with ctx.engine.begin() as connection:
        connection.execute(
            sa.update(ImageCopy)
            .where(col(ImageCopy.image_id) == image_id)
            .where(col(ImageCopy.host_node_id) == host_id)
            .where(col(ImageCopy.state) == CopyState.available)
            .values(state=CopyState.failed, error="the file was gone from the host")
        )


def _row(session: Session, image_id: str, host_id: str) -> ImageCopy:
    found = session.get(ImageCopy, (image_id, host_id))
    assert found is not None, "made or found just before"
    return found


def _lease() -> object:
    return utcnow() + timedelta(seconds=LEASE_SECONDS)


def _set(ctx: JobContext, image_id: str, host_id: str, owner: str, **values: object) -> None:
    """Changes the copy's row if `owner` still holds it (a job whose lease ran out and was
    taken over must not overwrite its successor's work)."""
    with ctx.engine.begin() as connection:
        connection.execute(
            sa.update(ImageCopy)
            .where(col(ImageCopy.image_id) == image_id)
            .where(col(ImageCopy.host_node_id) == host_id)
            .where(col(ImageCopy.lease_owner) == owner)
            .values(updated_at=utcnow(), **values)
        )

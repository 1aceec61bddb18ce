"""Wakame-vdc's metadata drive: a 10 MiB disk right after an instance's root disk (vdb), an
MBR with one FAT partition labelled METADATA holding `meta-data/` as files and `user-data`,
what the metadata service answers (the layout: metadata/drive.py). wakame-init reads it by
default, vdc-init when it is there: a guest learns who it is without asking the network.

The image is built on the control host without mounting (fat_image.py), kept in the data
dir (`metadata-drives/<instance>.img`), and put in the instance's pool on its host through
libvirt's upload stream, as image copies go: no host needs a path shared with vdc. The
digest of its files is kept on the instance, so a start whose facts did not change (user-
data, key, hostname, address, groups, volumes) uploads nothing, and one whose facts changed
gets a new drive. A running guest's drive is never replaced under it: a changed drive waits
for the next start.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import col

from app.config import Settings
from app.models import Instance
from app.models.volume import METADATA_DRIVE_DEVICE
from app.services.compute.fat_image import build_fat_image
from app.services.jobs_context import JobContext
from app.services.storage.pools import INSTANCE_POOL
from hypervisor.driver import HostDriver
from hypervisor.errors import NotFoundOnHost
from hypervisor.specs import DiskSpec, VolumeSpec
from metadata.drive import drive_files
from metadata.facts import gather
from metadata.tree import build

SIZE = 10 * 1024 * 1024  # as Wakame-vdc's
LABEL = "METADATA"  # what wakame-init and vdc-init look for
SERIAL = "metadata"  # the guest's /dev/disk/by-id/virtio-metadata
FOLDER = "metadata-drives"  # in the data dir
# Part of every digest: a change of layout gives every drive a new one at its next start.
LAYOUT = b"vdc-metadata-drive 1"


def volume_name(instance_id: str) -> str:
    """The drive's file in the host's instance pool, beside the root disk."""
    return f"{instance_id}-metadata.img"


def local_path(settings: Settings, instance_id: str) -> Path:
    return settings.data_dir / FOLDER / f"{instance_id}.img"


def digest(files: dict[str, bytes]) -> str:
    """Names and bytes of every file, each length-prefixed so no two contents collide."""
    hashed = hashlib.sha256(LAYOUT)
    for name in sorted(files):
        for part in (name.encode(), files[name]):
            hashed.update(len(part).to_bytes(8, "big"))
            hashed.update(part)
    return hashed.hexdigest()


def ensure_drive(ctx: JobContext, instance_id: str, driver: HostDriver) -> DiskSpec | None:
    """The instance's drive as the domain's disk, (re)built and uploaded when its content
    is not what the host holds; None for an instance without one (or already leaving)."""
    with ctx.session() as session:
        instance = session.get(Instance, instance_id)
        if instance is None or not instance.metadata_drive:
            return None  # most launches: nothing to gather
        facts = gather(session, instance_id, ctx.settings.region)
    if facts is None:
        return None
    files = drive_files(build(facts))
    wanted = digest(files)
    name = volume_name(instance_id)
    path = _path_on_host(driver, name)
    if path is not None and (
        instance.metadata_drive_digest == wanted or _is_running(driver, instance_id)
    ):
        return disk_spec(path)
    local = _build(ctx.settings, instance_id, files, wanted)
    # No digest while the host's file is being replaced: one cut short by a crash must never
    # match a later start's facts.
    _record(ctx, instance_id, "")
    if driver.is_test():
        # libvirt's test driver takes no bytes: a volume of the size stands for the file.
        path = driver.ensure_volume(INSTANCE_POOL, VolumeSpec(name=name, capacity_bytes=SIZE))
    else:
        path = driver.upload_file(INSTANCE_POOL, name, local)
    _record(ctx, instance_id, wanted)
    return disk_spec(path)


def disk_spec(path: str) -> DiskSpec:
    # Read-only: the guest cannot change what vdc compares with its digest, and mounts it
    # read-only even when asked for read-write (as wakame-init does).
    return DiskSpec(
        path=path, format="raw", target=METADATA_DRIVE_DEVICE, serial=SERIAL, read_only=True
    )


def remove(settings: Settings, driver: HostDriver | None, instance_id: str) -> None:
    """Deletes the drive from the host (when given) and from the data dir; idempotent."""
    if driver is not None:
        driver.delete_volume(INSTANCE_POOL, volume_name(instance_id))
    local_path(settings, instance_id).unlink(missing_ok=True)


def _build(settings: Settings, instance_id: str, files: dict[str, bytes], wanted: str) -> Path:
    """The image in the data dir, replaced whole (a reader never sees half of it)."""
    final = local_path(settings, instance_id)
    final.parent.mkdir(mode=0o700, exist_ok=True)  # user-data may hold secrets
    partial = final.with_name(f".{final.name}.{os.getpid()}")
    try:
        build_fat_image(partial, files, LABEL, SIZE, volume_id=wanted[:8])
        partial.chmod(0o600)
        partial.replace(final)
    finally:
        partial.unlink(missing_ok=True)
    return final


def _record(ctx: JobContext, instance_id: str, digest_on_host: str) -> None:
    with ctx.engine.begin() as connection:  # not updated_at: no fact of the instance changed
        connection.execute(
            sa.update(Instance)
            .where(col(Instance.id) == instance_id)
            .values(metadata_drive_digest=digest_on_host)
        )


def _path_on_host(driver: HostDriver, name: str) -> str | None:
    try:
        return driver.volume_path(INSTANCE_POOL, name)
    except NotFoundOnHost:
        return None


def _is_running(driver: HostDriver, instance_id: str) -> bool:
    guest = driver.find_guest(instance_id)
    return guest is not None and guest.is_running()

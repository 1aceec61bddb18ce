"""Machine image use cases: register (local file or upload), list, show, update, delete."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlmodel import Session, col, select

from app import data_dir
from app.config import KNOWN_ARCHES, Settings
from app.errors import BadRequest, Conflict, Forbidden, InvalidImage, PayloadTooLarge
from app.ids import new_id
from app.models import Account, Image, Instance, Volume
from app.models.common import utcnow
from app.models.image import ImageKind, ImageState, ImageUpdate
from app.models.instance import InstanceState
from app.models.volume import GIB, VolumeState
from app.services import access, quotas
from app.services.changes import apply_changes
from app.services.identity.accounts import get_account
from app.services.images import disk_images, free_space
from app.services.images.disk_images import DiskInfo, ProgressCallback
from app.services.listing import PageRequest
from app.services.storage import image_copies

SORTABLE = ("created_at", "updated_at", "display_name", "virtual_size", "file_size", "id")
PARTIAL_PREFIX = ".partial-"


@dataclass(frozen=True)
class ImageSpec:
    """What the caller says about an image, validated before any byte is copied."""

    arch: str
    account_id: str
    description: str = ""
    display_name: str = ""
    is_public: bool = False
    convert_to: str | None = None
    metadata_drive: bool = False  # its instances get the metadata drive by default

    def check(self) -> None:
        if self.arch not in KNOWN_ARCHES:
            raise BadRequest(f"unknown arch {self.arch!r}; choose one of {', '.join(KNOWN_ARCHES)}")
        if self.convert_to is not None and self.convert_to not in disk_images.CONVERSION_TARGETS:
            raise BadRequest(f"cannot convert to {self.convert_to!r}; choose qcow2 or raw")
        if len(self.description) > 1024 or len(self.display_name) > 255:
            raise BadRequest("description is limited to 1024 characters, display name to 255")


def may_publish(account: Account, is_public: bool | None) -> None:
    """A public image shows in every account's launch list, so only an admin publishes one
    (a user could otherwise plant "ubuntu-22.04" in everyone's list)."""
    if is_public and not account.is_admin:
        raise Forbidden(
            "only an admin may make an image public; register it private, or ask an admin"
        )


# --- reading -----------------------------------------------------------------------------


def list_images(
    session: Session, account: Account, page: PageRequest, **filters: object
) -> tuple[list[Image], int]:
    """Images an account may see: its own and every public one (admins see all)."""
    return access.page(session, account, Image, page, SORTABLE, filters)


def _owned(session: Session, account: Account, image_id: str) -> Image:
    image = access.get(session, account, Image, image_id)
    if image.account_id != account.id and not account.is_admin:
        raise Forbidden(f"image {image_id} is public but belongs to {image.account_id}")
    return image


# --- registering -------------------------------------------------------------------------


def check_local_path(settings: Settings, path: Path) -> Path:
    """The real path of a file an operator wants registered, if it lies in an import dir."""
    try:
        real = path.resolve(strict=True)
    except (FileNotFoundError, RuntimeError) as exc:
        raise InvalidImage(f"{path}: no such file") from exc
    allowed = [directory.resolve() for directory in settings.allowed_import_dirs]
    if not any(real.is_relative_to(directory) for directory in allowed):
        dirs = ", ".join(str(d) for d in allowed)
        raise BadRequest(
            f"{path} is outside the import directories ({dirs}); move it there or add its "
            "folder to VDC_IMPORT_DIRS"
        )
    if not real.is_file():
        raise InvalidImage(f"{path} is not a regular file")
    if not os.access(real, os.R_OK):
        raise InvalidImage(f"{path} is not readable")
    if real.stat().st_size > settings.max_image_size:
        raise PayloadTooLarge(
            f"{path} is {real.stat().st_size} bytes, over the limit of {settings.max_image_size}"
        )
    return real


def register_local(
    session: Session,
    settings: Settings,
    path: Path,
    spec: ImageSpec,
    progress: ProgressCallback | None = None,
) -> Image:
    """`vdc-manage image add local`: checks, copies into the image store, records."""
    spec.check()
    owner_id = get_account(session, spec.account_id).id
    source = check_local_path(settings, path)
    check_quota_early(session, settings, spec, source.stat().st_size)
    # Refuse early, before copying gigabytes of something that is not an image...
    disk_images.inspect(source, settings.qemu_img)
    with partial_file(settings) as partial:
        free_space.require(settings.image_dir, source.stat().st_size)
        digest = disk_images.copy_with_digest(source, partial, progress, settings.max_image_size)
        # ...and look again at the copy, which is what vdc will really boot.
        return _finish(session, settings, partial, digest, spec, owner_id, "local", progress)


def finish_upload(
    session: Session, settings: Settings, partial: Path, digest: str, spec: ImageSpec
) -> Image:
    """The API's upload, once the body is on disk in `partial` (see app/api/images.py)."""
    spec.check()
    owner_id = get_account(session, spec.account_id).id
    return _finish(session, settings, partial, digest, spec, owner_id, "upload", None)


def check_quota_early(
    session: Session, settings: Settings, spec: ImageSpec, size: int | None
) -> None:
    """Refuses, before any byte is copied or received, what the owner's quota would refuse
    anyway (unlocked: the check before the commit decides)."""
    owner_id = get_account(session, spec.account_id).id
    wanted: dict[str, float] = {"images": 1}
    if size is not None and spec.convert_to is None:  # a conversion changes the size
        wanted["image_gib"] = size / GIB
    quotas.check(session, settings, owner_id, lock=False, **wanted)


@contextmanager
def partial_file(settings: Settings) -> Iterator[Path]:
    """A fresh file name in the image store, removed unless it was moved into place.

    A crash can leave one behind; `sweep_partials` clears them at the next start.
    """
    data_dir.make_passable(settings.image_dir)
    partial = settings.image_dir / f"{PARTIAL_PREFIX}{new_id('image')}"
    try:
        yield partial
    finally:
        partial.unlink(missing_ok=True)


def sweep_partials(settings: Settings) -> int:
    if not settings.image_dir.is_dir():
        return 0
    stale = list(settings.image_dir.glob(f"{PARTIAL_PREFIX}*"))
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def _finish(
    session: Session,
    settings: Settings,
    partial: Path,
    digest: str,
    spec: ImageSpec,
    owner_id: str,
    source: str,
    progress: ProgressCallback | None,
) -> Image:
    """Inspects the copy (converting it if asked), records it, moves it into place."""
    info = disk_images.inspect(partial, settings.qemu_img)
    image_id = new_id("image")
    if spec.convert_to and info.kind == ImageKind.iso:
        raise BadRequest(
            "this is an ISO image (an installer CD): it is stored as it is, register it "
            "without conversion"
        )
    if spec.convert_to and spec.convert_to != info.format:
        converted = partial.with_name(partial.name + "." + spec.convert_to)
        try:
            disk_images.convert(
                partial,
                info.format,
                info,
                converted,
                spec.convert_to,
                settings.max_image_size,
                progress,
                settings.qemu_img,
            )
            info = disk_images.inspect(converted, settings.qemu_img)
            digest = disk_images.file_digest(converted)
            converted.replace(partial)
        finally:
            converted.unlink(missing_ok=True)
    quotas.check(session, settings, owner_id, images=1, image_gib=info.file_size / GIB)
    image = _record(session, image_id, info, digest, spec, owner_id, source)
    commit_with_file(session, partial, settings.image_dir / image.file_name)
    return image


def commit_with_file(session: Session, partial: Path, final: Path) -> None:
    """Moves the finished file into the image store and commits the row that names it: the
    file stays only if the row is committed, so no image points at a missing file and no
    file is left that no image names."""
    partial.replace(final)
    try:
        session.commit()
    except BaseException:
        final.unlink(missing_ok=True)
        raise


def _record(
    session: Session,
    image_id: str,
    info: DiskInfo,
    digest: str,
    spec: ImageSpec,
    owner_id: str,
    source: str,
) -> Image:
    image = Image(
        id=image_id,
        account_id=owner_id,
        display_name=spec.display_name or image_id,
        description=spec.description,
        arch=spec.arch,
        is_public=spec.is_public,
        metadata_drive=spec.metadata_drive,
        source=source,
        format=info.format,
        virtual_size=info.virtual_size,
        file_size=info.file_size,
        sha256=digest,
        kind=info.kind,
        # An ISO keeps its name's ending: what it is to anyone looking at the store.
        file_name=f"{image_id}.{'iso' if info.kind == ImageKind.iso else info.format}",
    )
    session.add(image)
    session.flush()
    return image


# --- changing ----------------------------------------------------------------------------


def update_image(session: Session, account: Account, image_id: str, changes: ImageUpdate) -> Image:
    image = _owned(session, account, image_id)
    may_publish(account, changes.is_public)
    apply_changes(image, changes)
    image.updated_at = utcnow()
    session.add(image)
    session.commit()
    return image


def delete_image(session: Session, settings: Settings, account: Account, image_id: str) -> None:
    image = _owned(session, account, image_id)
    if image.state == ImageState.creating:
        raise Conflict(
            f"image {image.id} is creating (captured from an instance); delete it once it is "
            "available or in error"
        )
    _refuse_if_in_use(session, image)
    path = settings.image_dir / image.file_name
    # Its copies on other hosts go too (those whose host is down, once it is back).
    image_copies.forget_image(session, image.id)
    session.delete(image)
    session.commit()
    # The row goes first: a file without a row is a leak the doctor can find, a row without
    # a file would be an image that fails every launch.
    path.unlink(missing_ok=True)


def _refuse_if_in_use(session: Session, image: Image) -> None:
    """Root disks and volumes made from an image are overlays on its file; an ISO is the CD
    of the instances launched from it."""
    instance = session.exec(
        select(Instance.id)
        .where(Instance.image_id == image.id)
        .where(col(Instance.state) != InstanceState.terminated)
    ).first()
    volume = session.exec(
        select(Volume.id)
        .where(Volume.image_id == image.id)
        .where(col(Volume.state) != VolumeState.deleted)
    ).first()
    user = instance or volume
    if user is not None:
        raise Conflict(f"image {image.id} is in use by {user}: its disk is an overlay on the image")

"""Machine images (`wmi-...`): a disk file KVM can boot, owned by an account.

An image is a disk (`kind` "disk": the base of its instances' root disks) or an installer
CD (`kind` "iso": an ISO 9660 file, only ever a read-only CD-ROM of an instance that gets
a blank root disk). An image captured from an instance is `creating` until its job has
brought the disk to the image store, then `available` (or `error`, with the reason).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict
from pydantic import Field as PydanticField
from sqlmodel import Field, SQLModel

from app.models.common import timestamp_column, utcnow
from app.models.image_copy import ImageCopyPublic


class ImageState(StrEnum):
    creating = "creating"  # a capture job is making its file; not launchable yet
    available = "available"
    error = "error"  # the capture failed: state_reason says why; it has no file


class ImageKind(StrEnum):
    disk = "disk"
    iso = "iso"


class ImageBase(SQLModel):
    display_name: str = Field(default="", max_length=255)
    description: str = Field(default="", max_length=1024)
    arch: str = Field(max_length=16)
    is_public: bool = False
    # Instances of the image get Wakame-vdc's metadata drive unless their launch says no
    # (images whose init reads LABEL=METADATA, as wakame-init does).
    metadata_drive: bool = False


class Image(ImageBase, table=True):
    __tablename__ = "images"

    id: str = Field(primary_key=True, max_length=32)
    account_id: str = Field(foreign_key="accounts.id", index=True)
    state: str = Field(default=ImageState.available, max_length=16)
    # While creating: the step under way; in error: why.
    state_reason: str = Field(default="", max_length=2048)
    progress: int = 100  # percent of a capture done (100 for every other image)
    kind: str = Field(default=ImageKind.disk, max_length=8)
    source: str = Field(max_length=16)  # "local", "upload" or "capture"
    format: str = Field(max_length=16)
    virtual_size: int = Field(sa_type=sa.BigInteger)
    file_size: int = Field(sa_type=sa.BigInteger)
    sha256: str = Field(max_length=64)
    # The file's name under DATA_DIR/images; never shown to API users.
    file_name: str = Field(max_length=255)
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())


class ImagePublic(ImageBase):
    id: str
    account_id: str
    state: str
    state_reason: str
    progress: int
    kind: str
    source: str
    format: str
    virtual_size: int
    file_size: int
    sha256: str
    created_at: datetime
    updated_at: datetime
    copies: list[ImageCopyPublic] = []  # the hosts that hold it (shown to admins)


class ImageUpdate(BaseModel):
    """A PATCH: only these fields may change; a body naming any other (the owner, the file,
    its digest) is refused whole, so a typo never passes for a change that was made."""

    model_config = ConfigDict(extra="forbid")

    display_name: str | None = PydanticField(default=None, max_length=255)
    description: str | None = PydanticField(default=None, max_length=1024)
    is_public: bool | None = None
    metadata_drive: bool | None = PydanticField(
        default=None, description="Its instances get the metadata drive unless a launch says no"
    )


class ImageCapture(BaseModel):
    """An image made from a stopped instance's root disk (Wakame-vdc's instance backup)."""

    display_name: str = PydanticField(default="", max_length=255)
    description: str = PydanticField(default="", max_length=1024)
    is_public: bool = PydanticField(default=False, description="Admins only")
    prepare: bool = PydanticField(
        default=False,
        description="Run `image prepare` on the copy: MAC rules, SSH host keys, logs, acpiphp, "
        "vdc-init (for a Linux installed from an ISO)",
    )

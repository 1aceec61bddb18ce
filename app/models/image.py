"""Machine images (`wmi-...`): a disk file KVM can boot, owned by an account."""

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
    available = "available"


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
    source: str = Field(max_length=16)  # "local" or "upload"
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

"""Volumes (`vol-...`): qcow2 disks in a host's `vdc-volumes` pool, attached to instances as
virtio disks whose serial is the volume id. An instance's root disk is a volume too (`boot`),
so every disk an instance has shows in one list."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Self

import sqlalchemy as sa
from pydantic import BaseModel, model_validator
from pydantic import Field as PydanticField
from sqlmodel import Field, SQLModel

from app.models.common import state_column, timestamp_column, utcnow

MIB = 1024**2
GIB = 1024**3
# Guest device names vdc hands out for data volumes; vda is the root disk.
DATA_DEVICES = tuple(f"vd{letter}" for letter in "bcdefghijklmnopqrstuvwxyz")
# An instance with a metadata drive has it right after its root disk, as Wakame-vdc did:
# its volumes take the devices after that.
METADATA_DRIVE_DEVICE = "vdb"
DEVICE_PATTERN = r"^vd[b-z]$"
MAX_LAUNCH_VOLUMES = 8


def volume_devices(metadata_drive: bool) -> tuple[str, ...]:
    """The devices an instance's volumes may take."""
    return tuple(d for d in DATA_DEVICES if not (metadata_drive and d == METADATA_DRIVE_DEVICE))


class VolumeState(StrEnum):
    creating = "creating"
    available = "available"
    attaching = "attaching"
    attached = "attached"
    detaching = "detaching"
    deleting = "deleting"
    deleted = "deleted"
    error = "error"


class Volume(SQLModel, table=True):
    __tablename__ = "volumes"
    # Two volumes never share a device of one instance, whoever asked first.
    __table_args__ = (sa.UniqueConstraint("instance_id", "device", name="uq_volume_device"),)

    id: str = Field(primary_key=True, max_length=32)
    account_id: str = Field(foreign_key="accounts.id", index=True, max_length=32)
    display_name: str = Field(default="", max_length=255)
    size: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))  # bytes
    image_id: str | None = Field(default=None, max_length=32)  # made from this image
    host_node_id: str | None = Field(
        default=None, foreign_key="host_nodes.id", index=True, max_length=32
    )
    state: VolumeState = Field(
        default=VolumeState.creating, sa_column=state_column(VolumeState, index=True)
    )
    state_reason: str = Field(default="", max_length=2048)
    instance_id: str | None = Field(
        default=None, foreign_key="instances.id", index=True, max_length=32
    )
    device: str | None = Field(default=None, max_length=8)  # vda (root), vdb, ...
    boot: bool = False
    delete_on_termination: bool = False
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    attached_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))
    deleted_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))


class _Sized(BaseModel):
    size_mib: int | None = PydanticField(default=None, ge=1, le=64 * 1024 * 1024)
    size_gib: int | None = PydanticField(default=None, ge=1, le=64 * 1024)

    def size_bytes(self) -> int | None:
        if self.size_mib is not None:
            return self.size_mib * MIB
        if self.size_gib is not None:
            return self.size_gib * GIB
        return None

    def _one_size(self, required: bool) -> None:
        if self.size_mib is not None and self.size_gib is not None:
            raise ValueError("give size_mib or size_gib, not both")
        if required and self.size_bytes() is None:
            raise ValueError("give size_mib or size_gib")


class VolumeCreate(_Sized):
    display_name: str = PydanticField(default="", max_length=255)
    image_id: str | None = PydanticField(
        default=None, min_length=1, max_length=32, description="Start from this image's contents"
    )
    instance_id: str | None = PydanticField(
        default=None,
        min_length=1,
        max_length=32,
        description="Create it on this instance's host (a volume attaches only there)",
    )
    host_node_id: str | None = PydanticField(
        default=None,
        min_length=1,
        max_length=32,
        description="Or on this host; default: the emptiest",
    )

    @model_validator(mode="after")
    def _size_or_image(self) -> Self:
        self._one_size(required=self.image_id is None)
        if self.instance_id is not None and self.host_node_id is not None:
            raise ValueError("give instance_id or host_node_id, not both")
        return self


class LaunchVolume(_Sized):
    """A blank volume made and attached with the instance."""

    display_name: str = PydanticField(default="", max_length=255)
    delete_on_termination: bool = True

    @model_validator(mode="after")
    def _size(self) -> Self:
        self._one_size(required=True)
        return self


class VolumeUpdate(BaseModel):
    display_name: str | None = PydanticField(default=None, max_length=255)
    delete_on_termination: bool | None = None


class VolumeAttach(BaseModel):
    instance_id: str = PydanticField(max_length=32)
    device: str | None = PydanticField(
        default=None, pattern=DEVICE_PATTERN, description="vdb..vdz; default: the first free"
    )


class VolumePublic(BaseModel):
    id: str
    account_id: str
    display_name: str
    size: int
    size_mib: int
    image_id: str | None
    host_node_id: str | None
    state: str
    state_reason: str
    instance_id: str | None
    device: str | None
    boot: bool
    delete_on_termination: bool
    created_at: datetime
    updated_at: datetime
    attached_at: datetime | None
    deleted_at: datetime | None

    @classmethod
    def of(cls, volume: Volume) -> VolumePublic:
        return cls(**volume.model_dump(), size_mib=volume.size // MIB)

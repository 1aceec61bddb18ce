"""Instances (`i-...`) and their network interfaces (`vif-...`, each holding an IP lease)."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from enum import StrEnum
from typing import Literal, Self

import sqlalchemy as sa
from pydantic import BaseModel, model_validator
from pydantic import Field as PydanticField
from sqlmodel import Field, SQLModel

from app.models.common import state_column, timestamp_column, utcnow
from app.models.volume import MAX_LAUNCH_VOLUMES, LaunchVolume

MAX_USER_DATA = 16 * 1024
HOSTNAME_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"


class InstanceState(StrEnum):
    pending = "pending"
    starting = "starting"
    running = "running"
    stopping = "stopping"
    stopped = "stopped"
    rebooting = "rebooting"
    shuttingdown = "shuttingdown"
    terminated = "terminated"
    error = "error"


# An instance in these states is leaving or gone: it is nobody's group member any more, and
# its address may already be another instance's.
GONE_STATES = (InstanceState.shuttingdown, InstanceState.terminated)


class Instance(SQLModel, table=True):
    __tablename__ = "instances"
    # Lists page by created_at (then id) within an account (and a state), a state, or all: each
    # index gives a page in order without sorting the table. Their first columns also serve
    # the lookups by account (quotas) and by state (the sync).
    __table_args__ = (
        sa.Index("ix_instances_account_created", "account_id", "created_at", "id"),
        sa.Index("ix_instances_account_state_created", "account_id", "state", "created_at", "id"),
        sa.Index("ix_instances_state_created", "state", "created_at", "id"),
        sa.Index("ix_instances_created", "created_at", "id"),
        # A host's load (placement, every launch): its instances that still hold cores and
        # memory, found by state without visiting the terminated ones, which only grow.
        sa.Index("ix_instances_host_state", "host_node_id", "state"),
    )

    id: str = Field(primary_key=True, max_length=32)
    account_id: str = Field(foreign_key="accounts.id", max_length=32)
    display_name: str = Field(default="", max_length=255)
    hostname: str = Field(max_length=63)
    # No foreign key: a terminated instance keeps the id of the image it ran, which may be
    # deleted then (the image service refuses while a live instance uses it).
    image_id: str = Field(index=True, max_length=32)
    instance_type: str | None = Field(default=None, max_length=32)
    cpu_cores: int
    memory_size: int  # MiB
    root_disk_size: int = 0  # GiB; 0 = the image's virtual size
    # The ISO image in its CD-ROM drive (instances launched from an ISO have one); None once
    # ejected. What the drive should hold: the eject job and every start make it so.
    cdrom_image_id: str | None = Field(default=None, max_length=32)
    host_node_id: str | None = Field(default=None, foreign_key="host_nodes.id", max_length=32)
    state: InstanceState = Field(
        default=InstanceState.pending, sa_column=state_column(InstanceState)
    )
    state_reason: str = Field(default="", max_length=2048)
    user_data: bytes | None = Field(
        default=None, sa_column=sa.Column(sa.LargeBinary, nullable=True)
    )
    ssh_key_id: str | None = Field(default=None, foreign_key="ssh_key_pairs.id", max_length=32)
    # IMDS: "optional" (plain GETs and tokens) or "required" (IMDSv2 tokens only), as AWS.
    http_tokens: str = Field(default="optional", max_length=16)
    # Wakame-vdc's metadata drive (app/services/compute/metadata_drive.py): decided at launch,
    # and the digest of the content last put on the host (empty: none yet), so a start whose
    # facts did not change uploads nothing.
    metadata_drive: bool = False
    metadata_drive_digest: str = Field(default="", max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    launched_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))
    terminated_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))


class NetworkInterface(SQLModel, table=True):
    """A NIC of an instance; its (network, ip) pair is the lease, unique per network."""

    __tablename__ = "network_interfaces"
    __table_args__ = (
        sa.UniqueConstraint("network_id", "ip_address", name="uq_lease_per_network"),
        # The highest address in use in a network, in one index step: where the next
        # launch's address is (network.addresses.free_addresses).
        sa.Index("ix_network_interfaces_network_number", "network_id", "ip_number"),
    )

    id: str = Field(primary_key=True, max_length=32)
    instance_id: str = Field(foreign_key="instances.id", index=True, max_length=32)
    network_id: str = Field(foreign_key="networks.id", index=True, max_length=32)
    device_index: int = 0
    mac_address: str = Field(max_length=17, unique=True)
    ip_address: str = Field(max_length=39)
    # ip_address as an integer (network.addresses.address_number), for range queries.
    ip_number: int = Field(sa_type=sa.BigInteger)
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())


class InstanceCreate(BaseModel):
    image_id: str = PydanticField(max_length=32)
    instance_type: str | None = PydanticField(default=None, max_length=32, examples=["small"])
    cpu_cores: int | None = PydanticField(
        default=None, ge=1, le=256, description="Instead of a type"
    )
    memory_size: int | None = PydanticField(
        default=None, ge=16, le=4 * 1024 * 1024, description="MiB"
    )
    network_id: str | None = PydanticField(
        default=None, max_length=32, description="Default network if unset"
    )
    hostname: str | None = PydanticField(
        default=None, pattern=HOSTNAME_PATTERN, description="Default: the id"
    )
    display_name: str = PydanticField(default="", max_length=255)
    root_disk_size: int | None = PydanticField(
        default=None,
        ge=1,
        le=64 * 1024,
        description="GiB; default: the type's. From an ISO image (required then): the size of "
        "the blank disk the installer writes to",
    )
    user_data: str | None = PydanticField(default=None, description="Text, up to 16 KiB (UTF-8)")
    user_data_base64: str | None = PydanticField(
        default=None, description="Or bytes, base64-encoded"
    )
    ssh_key_id: str | None = PydanticField(
        default=None, max_length=32, description="Key pair for the metadata's public-keys/"
    )
    http_tokens: Literal["optional", "required"] = PydanticField(
        default="optional", description="IMDSv2: `required` refuses metadata GETs without a token"
    )
    security_group_ids: list[str] | None = PydanticField(
        default=None,
        max_length=10,
        description="Its security groups; default: the account's `default` group",
    )
    host_node_id: str | None = PydanticField(
        default=None,
        max_length=64,
        description="Admins only: the host (id or name) to run it on; default: the scheduler's",
    )
    volumes: list[LaunchVolume] = PydanticField(
        default_factory=list,
        max_length=MAX_LAUNCH_VOLUMES,
        description="Blank volumes made and attached with the instance (vdb, vdc, ...; "
        "vdc, vdd, ... with a metadata drive)",
    )
    metadata_drive: bool | None = PydanticField(
        default=None,
        description="Attach Wakame-vdc's metadata drive: a small FAT disk labelled METADATA "
        "after the root disk (vdb), holding meta-data/ and user-data as files; default: the "
        "image's metadata_drive",
    )

    @model_validator(mode="after")
    def _size_and_user_data(self) -> Self:
        if self.instance_type is None and (self.cpu_cores is None or self.memory_size is None):
            raise ValueError("give instance_type, or both cpu_cores and memory_size")
        check_user_data(self.user_data, self.user_data_base64)
        return self

    def user_data_bytes(self) -> bytes | None:
        return user_data_of(self.user_data, self.user_data_base64)


def check_user_data(text: str | None, encoded: str | None) -> None:
    """One of the two forms at most, valid base64, within MAX_USER_DATA (launch and update)."""
    if text is not None and encoded is not None:
        raise ValueError("give user_data or user_data_base64, not both")
    if len(user_data_of(text, encoded) or b"") > MAX_USER_DATA:
        raise ValueError(f"user data is limited to {MAX_USER_DATA} bytes")


def user_data_of(text: str | None, encoded: str | None) -> bytes | None:
    """The user-data bytes a request gives, as text or base64 (None: not given)."""
    if text is not None:
        return text.encode()
    if encoded is not None:
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("user_data_base64 is not valid base64") from exc
    return None


class InstanceUpdate(BaseModel):
    display_name: str | None = PydanticField(default=None, max_length=255)
    user_data: str | None = PydanticField(
        default=None, description="New user-data (text) of a stopped instance, as EC2 allows"
    )
    user_data_base64: str | None = PydanticField(
        default=None, description="Or bytes, base64-encoded"
    )
    http_tokens: Literal["optional", "required"] | None = PydanticField(
        default=None, description="Change the metadata options of a live instance"
    )
    security_group_ids: list[str] | None = PydanticField(
        default=None,
        max_length=10,
        description="Replace its security groups; a running guest's firewall follows in seconds",
    )

    @model_validator(mode="after")
    def _one_user_data(self) -> Self:
        check_user_data(self.user_data, self.user_data_base64)
        return self

    def user_data_bytes(self) -> bytes | None:
        return user_data_of(self.user_data, self.user_data_base64)


class InterfacePublic(BaseModel):
    id: str
    network_id: str
    device_index: int
    mac_address: str
    ip_address: str


class InstancePublic(BaseModel):
    id: str
    account_id: str
    display_name: str
    hostname: str
    image_id: str
    instance_type: str | None
    cpu_cores: int
    memory_size: int
    root_disk_size: int
    cdrom_image_id: str | None
    host_node_id: str | None
    state: str
    state_reason: str
    ip_address: str | None
    mac_address: str | None
    network_id: str | None
    interfaces: list[InterfacePublic]
    user_data_size: int
    security_group_ids: list[str]
    ssh_key_id: str | None
    http_tokens: str
    metadata_drive: bool
    created_at: datetime
    updated_at: datetime
    launched_at: datetime | None
    terminated_at: datetime | None


class StopOptions(BaseModel):
    eject: bool = PydanticField(
        default=False, description="Also eject the CD, so the next start boots the disk"
    )


class ConsoleOutput(BaseModel):
    instance_id: str
    output: str
    truncated: bool

"""Host nodes (`hn-...`): the libvirt hosts instances run on."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel
from pydantic import Field as PydanticField
from sqlmodel import Field, SQLModel

from app.models.common import state_column, timestamp_column, utcnow


class HostStatus(StrEnum):
    online = "online"
    offline = "offline"


class HostNodeBase(SQLModel):
    name: str = Field(max_length=64, unique=True)
    uri: str = Field(max_length=255, unique=True)
    cpu_cores: int
    memory_size: int  # MiB
    arch: str = Field(default="x86_64", max_length=16)
    enabled: bool = True


class HostNode(HostNodeBase, table=True):
    __tablename__ = "host_nodes"

    id: str = Field(primary_key=True, max_length=32)
    status: HostStatus = Field(default=HostStatus.offline, sa_column=state_column(HostStatus))
    status_reason: str = Field(default="", max_length=1024)
    # The host's address on the underlay, where other hosts send its guests' traffic (VXLAN).
    tunnel_ip: str = Field(default="", max_length=39)
    # What its guests run under, found by booting a probe guest: kvm, qemu (software), test.
    virt_type: str = Field(default="", max_length=8)
    virt_type_reason: str = Field(default="", max_length=1024)
    last_seen_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())


class HostNodeCreate(BaseModel):
    name: str = PydanticField(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    uri: str = PydanticField(
        min_length=1, max_length=255, description="libvirt URI, e.g. qemu:///system"
    )
    cpu_cores: int | None = PydanticField(
        default=None, ge=1, le=4096, description="Default: read from libvirt"
    )
    memory_size: int | None = PydanticField(
        default=None, ge=64, le=2**31, description="MiB; default: from libvirt"
    )
    tunnel_ip: str | None = PydanticField(
        default=None,
        max_length=39,
        description="Underlay address for guest traffic between hosts; default: the URI's host",
    )


class HostNodeUpdate(BaseModel):
    enabled: bool | None = None
    tunnel_ip: str | None = PydanticField(default=None, max_length=39)
    cpu_cores: int | None = PydanticField(default=None, ge=1, le=4096)
    memory_size: int | None = PydanticField(default=None, ge=64, le=2**31)


class HostNodePublic(HostNodeBase):
    id: str
    status: str
    status_reason: str
    tunnel_ip: str
    virt_type: str
    virt_type_reason: str
    last_seen_at: datetime | None
    created_at: datetime
    cpu_cores_used: int = 0
    memory_size_used: int = 0

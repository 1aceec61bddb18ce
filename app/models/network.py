"""Networks (`nw-...`): a CIDR with a gateway and a DHCP range; each is a libvirt network
(bridge + dnsmasq) on every host that runs an instance on it."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from pydantic import Field as PydanticField
from sqlmodel import Field, SQLModel

from app.models.common import timestamp_column, utcnow


class NetworkBase(SQLModel):
    name: str = Field(max_length=64, unique=True)
    cidr: str = Field(max_length=43)
    gateway: str = Field(max_length=39)
    dhcp_start: str = Field(max_length=39)
    dhcp_end: str = Field(max_length=39)
    dns_servers: str = Field(default="", max_length=255)  # comma-separated
    domain: str = Field(default="", max_length=253)
    is_default: bool = False
    # None: usable by every account; otherwise only by this one.
    account_id: str | None = Field(default=None, foreign_key="accounts.id", max_length=32)


class Network(NetworkBase, table=True):
    __tablename__ = "networks"

    id: str = Field(primary_key=True, max_length=32)
    bridge: str = Field(max_length=15, unique=True)
    # VXLAN segment id: one layer-2 segment on every host with a guest on the network.
    vni: int = Field(unique=True)
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())


class NetworkCreate(BaseModel):
    name: str = PydanticField(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    cidr: str = PydanticField(max_length=43, examples=["10.0.0.0/24"])
    gateway: str | None = PydanticField(
        default=None, max_length=39, description="Default: first address"
    )
    dhcp_start: str | None = PydanticField(
        default=None, max_length=39, description="Default: gateway + 1"
    )
    dhcp_end: str | None = PydanticField(
        default=None, max_length=39, description="Default: last address"
    )
    dns_servers: list[str] = PydanticField(default_factory=list, max_length=8)
    domain: str = PydanticField(default="", max_length=253)
    is_default: bool = False
    account_id: str | None = PydanticField(
        default=None, max_length=32, description="Private to this account"
    )


class NetworkUpdate(BaseModel):
    dns_servers: list[str] | None = PydanticField(default=None, max_length=8)
    domain: str | None = PydanticField(default=None, max_length=253)
    is_default: bool | None = None


class NetworkPublic(BaseModel):
    id: str
    name: str
    cidr: str
    gateway: str
    dhcp_start: str
    dhcp_end: str
    dns_servers: list[str]
    domain: str
    is_default: bool
    account_id: str | None
    bridge: str
    vni: int
    created_at: datetime
    addresses_in_use: int = 0

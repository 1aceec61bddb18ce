"""Quotas: how much each account may hold. Defaults come from settings (`VDC_QUOTA_*`); an
admin may override any of them per account in `account_quotas` (null: the default).

A limit of -1 means unlimited and 0 means none at all. Counts are of what an account holds
now: instances not terminated (or being terminated), their cores and memory, volumes not
deleted (root disks included), images, security groups other than `default`, key pairs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict
from pydantic import Field as PydanticField
from sqlmodel import Field, SQLModel

from app.models.common import timestamp_column, utcnow

UNLIMITED = -1
# Stored as INTEGER on both engines; nothing real comes near it.
MAX_LIMIT = 2**31 - 1

# name -> how a refusal says it ("10 instances allowed"), in the order they are shown.
QUOTAS: dict[str, str] = {
    "instances": "instances",
    "cores": "cores",
    "memory_mib": "MiB of memory",
    "volume_gib": "GiB of volumes",
    "images": "images",
    "image_gib": "GiB of images",
    "security_groups": "security groups",
    "key_pairs": "key pairs",
}
# ...and when the limit is 1 ("1 instance allowed").
SINGULAR = {
    "instances": "instance",
    "cores": "core",
    "images": "image",
    "security_groups": "security group",
    "key_pairs": "key pair",
}


class AccountQuota(SQLModel, table=True):
    """An account's own limits; a null column (or no row at all) means the default."""

    __tablename__ = "account_quotas"

    account_id: str = Field(
        primary_key=True, foreign_key="accounts.id", ondelete="CASCADE", max_length=32
    )
    instances: int | None = None
    cores: int | None = None
    memory_mib: int | None = None
    volume_gib: int | None = None
    images: int | None = None
    image_gib: int | None = None
    security_groups: int | None = None
    key_pairs: int | None = None
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())


Limit = Annotated[int | None, PydanticField(ge=UNLIMITED, le=MAX_LIMIT)]


class QuotaUpdate(BaseModel):
    """An admin's change. PUT: every limit left out goes back to the default. PATCH: only
    the limits sent change, and null puts one back to the default. -1 is unlimited."""

    model_config = ConfigDict(extra="forbid")

    instances: Limit = PydanticField(default=None, description="Instances not terminated")
    cores: Limit = PydanticField(default=None, description="vCPU cores of those instances")
    memory_mib: Limit = PydanticField(default=None, description="MiB of memory of those instances")
    volume_gib: Limit = PydanticField(
        default=None, description="GiB of volumes not deleted, root disks included"
    )
    images: Limit = PydanticField(default=None, description="Images the account owns")
    image_gib: Limit = PydanticField(
        default=None, description="GiB of image files the account owns"
    )
    security_groups: Limit = PydanticField(
        default=None, description="Security groups besides `default`"
    )
    key_pairs: Limit = PydanticField(default=None, description="SSH key pairs")


class QuotaItem(BaseModel):
    limit: int = PydanticField(description="-1: unlimited")
    used: int | float = PydanticField(description="GiB quotas may have a fraction")
    is_default: bool = PydanticField(description="The limit is the VDC_QUOTA_* default")


class QuotaPublic(BaseModel):
    account_id: str
    exempt: bool = PydanticField(description="The system account: no quota applies")
    instances: QuotaItem
    cores: QuotaItem
    memory_mib: QuotaItem
    volume_gib: QuotaItem
    images: QuotaItem
    image_gib: QuotaItem
    security_groups: QuotaItem
    key_pairs: QuotaItem

"""Instance types (`small`, `medium`, ...): named sizes for launches."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from pydantic import Field as PydanticField
from sqlmodel import Field, SQLModel

from app.models.common import timestamp_column, utcnow


class InstanceTypeBase(SQLModel):
    cpu_cores: int = Field(ge=1, le=256)
    memory_size: int = Field(ge=16, le=4 * 1024 * 1024)  # MiB
    root_disk_size: int = Field(ge=0, le=64 * 1024)  # GiB; 0 = the image's own size
    description: str = Field(default="", max_length=255)


class InstanceType(InstanceTypeBase, table=True):
    __tablename__ = "instance_types"

    name: str = Field(primary_key=True, max_length=32)
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())


class InstanceTypeCreate(InstanceTypeBase):
    name: str = PydanticField(min_length=1, max_length=32, pattern=r"^[a-z0-9][a-z0-9_.-]*$")


class InstanceTypeUpdate(BaseModel):
    cpu_cores: int | None = PydanticField(default=None, ge=1, le=256)
    memory_size: int | None = PydanticField(default=None, ge=16, le=4 * 1024 * 1024)
    root_disk_size: int | None = PydanticField(default=None, ge=0, le=64 * 1024)
    description: str | None = PydanticField(default=None, max_length=255)


class InstanceTypePublic(InstanceTypeBase):
    name: str
    created_at: datetime

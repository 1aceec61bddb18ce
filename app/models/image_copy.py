"""Which hosts hold a copy of which image: the backing file of the root disks there.

An image reaches a host the first time an instance of it starts there, uploaded once
through libvirt's volume upload stream into the host's image pool. The row is the lock:
one job uploads (state `uploading`, under a lease it renews), the others wait for
`available`. A copy that is not `available` is never used.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from pydantic import BaseModel
from sqlmodel import Field, SQLModel

from app.models.common import state_column, timestamp_column, utcnow


class CopyState(StrEnum):
    uploading = "uploading"
    available = "available"
    failed = "failed"
    deleting = "deleting"  # its image is gone; the file goes when the host answers


class ImageCopy(SQLModel, table=True):
    __tablename__ = "image_copies"

    # No foreign key to images: a copy outlives its image row until its host deleted it.
    image_id: str = Field(primary_key=True, max_length=32)
    host_node_id: str = Field(primary_key=True, foreign_key="host_nodes.id", max_length=32)
    state: CopyState = Field(default=CopyState.uploading, sa_column=state_column(CopyState))
    volume: str = Field(max_length=255)  # the file's name in the host's image pool
    sha256: str = Field(default="", max_length=64)
    size: int = Field(default=0, sa_column=sa.Column(sa.BigInteger, nullable=False))
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_expires_at: datetime | None = Field(
        default=None, sa_column=timestamp_column(nullable=True)
    )
    error: str = Field(default="", max_length=1024)
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())


class ImageCopyPublic(BaseModel):
    host_node_id: str
    state: str
    sha256: str
    size: int
    updated_at: datetime

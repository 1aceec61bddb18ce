"""Accounts own resources; API keys authenticate as an account (stored only as hashes)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from pydantic import Field as PydanticField
from sqlmodel import Field, SQLModel

from app.models.common import timestamp_column, utcnow


class AccountBase(SQLModel):
    name: str = Field(max_length=64, unique=True)
    description: str = Field(default="", max_length=255)
    is_admin: bool = False


class Account(AccountBase, table=True):
    __tablename__ = "accounts"

    id: str = Field(primary_key=True, max_length=32)
    is_system: bool = False
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: str = Field(primary_key=True, max_length=32)
    account_id: str = Field(foreign_key="accounts.id", index=True, ondelete="CASCADE")
    key_hash: str = Field(max_length=64, unique=True)
    # The first characters of the key, so an operator can tell keys apart.
    prefix: str = Field(max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())


class AccountCreate(BaseModel):
    name: str = PydanticField(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = PydanticField(default="", max_length=255)
    is_admin: bool = False


class AccountPublic(AccountBase):
    id: str
    is_system: bool
    created_at: datetime


class AccountWithKey(AccountPublic):
    """Answer to account creation: the only time the key is ever shown."""

    api_key: str

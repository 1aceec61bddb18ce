"""Accounts own resources; API keys authenticate as an account (stored only as hashes);
a web UI sign-in is a browser session row, so that it can be ended on the server."""

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
    # Set while the account may not act: its keys and web sessions are refused.
    disabled_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))
    # Set once deleted: the row stays only as the owner its history names (terminated
    # instances, deleted volumes); it is hidden everywhere and its name is free again.
    deleted_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: str = Field(primary_key=True, max_length=32)
    account_id: str = Field(foreign_key="accounts.id", index=True, ondelete="CASCADE")
    key_hash: str = Field(max_length=64, unique=True)
    # The first characters of the key, so an operator can tell keys apart.
    prefix: str = Field(max_length=16)
    # A label its owner chose ("laptop", "ci").
    name: str = Field(default="", max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    # A revoked key never authenticates again; the row stays as a record of the key.
    revoked_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))


class BrowserSession(SQLModel, table=True):
    """One web UI sign-in. The cookie holds a random token; this row holds its SHA-256, so
    that signing out, revoking the key or disabling the account ends it at once."""

    __tablename__ = "web_sessions"

    id: str = Field(primary_key=True, max_length=64)
    api_key_id: str = Field(
        foreign_key="api_keys.id", index=True, ondelete="CASCADE", max_length=32
    )
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    expires_at: datetime = Field(sa_column=timestamp_column())
    ended_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))


class AccountCreate(BaseModel):
    name: str = PydanticField(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = PydanticField(default="", max_length=255)
    is_admin: bool = False


class AccountUpdate(BaseModel):
    """Only the fields sent change."""

    description: str | None = PydanticField(default=None, max_length=255)
    is_admin: bool | None = PydanticField(
        default=None, description="false demotes (refused for the last enabled admin)"
    )
    disabled: bool | None = PydanticField(
        default=None,
        description="true refuses the account's keys and ends its web sessions at once; "
        "its instances keep running",
    )


class AccountPublic(AccountBase):
    id: str
    is_system: bool
    created_at: datetime
    disabled: bool
    disabled_at: datetime | None


class AccountWithKey(AccountPublic):
    """Answer to account creation: the only time the key is ever shown."""

    api_key: str


class ApiKeyCreate(BaseModel):
    name: str = PydanticField(
        default="", max_length=64, description="A label to tell keys apart, e.g. laptop or ci"
    )
    account_id: str | None = PydanticField(
        default=None, max_length=64, description="Admins only: issue the key for this account"
    )


class ApiKeyPublic(BaseModel):
    """A key as lists show it: by id and prefix, never the key or its hash."""

    id: str
    account_id: str
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyWithSecret(ApiKeyPublic):
    """Answer to issuing a key: the only time the key is ever shown."""

    api_key: str

"""One-time tickets to an instance's screen: asked for by the web UI (bound to the browser
session that asked) or through the API (by an API key), each good for one WebSocket
connection within a short time. The database keeps only the ticket's SHA-256."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from pydantic import Field as PydanticField
from sqlmodel import Field, SQLModel

from app.models.common import timestamp_column, utcnow


class ConsoleTicket(SQLModel, table=True):
    __tablename__ = "console_tickets"

    id: str = Field(primary_key=True, max_length=64)  # SHA-256 of the ticket
    instance_id: str = Field(
        foreign_key="instances.id", index=True, ondelete="CASCADE", max_length=32
    )
    # Who asked: the account, and the web session or the API key it asked with. A
    # session-bound ticket only opens a screen for that same signed-in browser.
    account_id: str = Field(foreign_key="accounts.id", ondelete="CASCADE", max_length=32)
    web_session_id: str | None = Field(
        default=None, foreign_key="web_sessions.id", ondelete="CASCADE", max_length=64
    )
    api_key_id: str | None = Field(
        default=None, foreign_key="api_keys.id", ondelete="CASCADE", max_length=32
    )
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    expires_at: datetime = Field(sa_column=timestamp_column())
    used_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))


class VncConsole(BaseModel):
    """Where a client opens the instance's screen: a WebSocket that speaks RFB (VNC) with
    no authentication of its own, the ticket having been checked by vdc."""

    instance_id: str
    protocol: str = PydanticField(default="vnc", description="RFB 3.8 over a binary WebSocket")
    url: str = PydanticField(description="ws:// or wss:// URL with its one-time ticket")
    expires_at: datetime = PydanticField(description="connect before this; the ticket works once")

"""Web UI sign-ins kept on the server: a browser holds a random token, the database its
SHA-256 with the key it was opened with. Each page request is one lookup by primary key
(joined to the key and the account), so signing out, revoking the key or disabling the
account ends the session at once, and a copied cookie ends with it."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

import sqlalchemy as sa
from sqlmodel import Session, col, select

from app.models import Account, ApiKey, BrowserSession
from app.models.common import utcnow
from app.services.identity import api_keys


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start(session: Session, api_key: ApiKey, lifetime_seconds: int) -> str:
    """Opens a session for a key that just authenticated; returns the browser's token."""
    now = utcnow()
    # The key's sessions that ran out are of no use to anyone: they go as a new one comes.
    session.execute(
        sa.delete(BrowserSession).where(
            col(BrowserSession.api_key_id) == api_key.id, col(BrowserSession.expires_at) < now
        )
    )
    token = secrets.token_urlsafe(32)
    session.add(
        BrowserSession(
            id=_digest(token),
            api_key_id=api_key.id,
            created_at=now,
            expires_at=now + timedelta(seconds=lifetime_seconds),
        )
    )
    session.commit()
    return token


def resolve(session: Session, token: str) -> tuple[BrowserSession, ApiKey, Account] | None:
    """The live session for this token, its key and account; None if it ended, expired,
    or its key or account may no longer act."""
    found = session.exec(
        select(BrowserSession, ApiKey, Account)
        .join(ApiKey, col(ApiKey.id) == BrowserSession.api_key_id)
        .join(Account, col(Account.id) == ApiKey.account_id)
        .where(BrowserSession.id == _digest(token))
    ).first()
    if found is None:
        return None
    browser, api_key, account = found
    if browser.ended_at is not None or browser.expires_at <= utcnow():
        return None
    if api_keys.refused(api_key, account):
        return None
    return browser, api_key, account


def end(session: Session, session_id: str) -> None:
    """Signing out: this session only (the key's other browsers stay signed in)."""
    session.execute(
        sa.update(BrowserSession)
        .where(col(BrowserSession.id) == session_id, col(BrowserSession.ended_at).is_(None))
        .values(ended_at=utcnow())
    )
    session.commit()

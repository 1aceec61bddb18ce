"""API keys: issued (the key is shown once), checked in one indexed lookup, listed by id and
prefix, revoked. A revoked key, or any key of a disabled account, authenticates no more,
and the web sessions it opened end with it."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Collection

import sqlalchemy as sa
from sqlmodel import Session, col, select

from app.errors import Unauthorized
from app.ids import new_id
from app.models import Account, ApiKey, BrowserSession
from app.models.common import utcnow
from app.services import access
from app.services.listing import PageRequest

KEY_PREFIX = "vdc_"
SORTABLE = ("created_at", "name", "id")


def hash_key(key: str) -> str:
    # Keys are 256 random bits, so a plain SHA-256 is as strong as a slow KDF here and lets
    # authentication be one indexed lookup.
    return hashlib.sha256(key.encode()).hexdigest()


def issue(session: Session, account: Account, name: str = "") -> tuple[ApiKey, str]:
    """A new key for the account (flushed, not committed); the key is returned only here."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        id=new_id("api_key"),
        account_id=account.id,
        key_hash=hash_key(key),
        prefix=key[:10],
        name=name,
    )
    session.add(row)
    session.flush()
    return row, key


# Built once: every API request asks. Parameter: hash.
_BY_HASH = (
    select(ApiKey, Account)
    .join(Account, col(Account.id) == ApiKey.account_id)
    .where(col(ApiKey.key_hash) == sa.bindparam("hash"))
)


def authenticate(session: Session, key: str) -> tuple[ApiKey, Account]:
    """The key's row and account; Unauthorized (saying why) when it may not act."""
    found = None
    if key.startswith(KEY_PREFIX):
        found = session.exec(_BY_HASH, params={"hash": hash_key(key)}).first()
    if found is None:
        raise Unauthorized("invalid API key")
    api_key, account = found
    refusal = refused(api_key, account)
    if refusal:
        raise Unauthorized(refusal)
    return api_key, account


def refused(api_key: ApiKey, account: Account) -> str | None:
    """Why this key may not act now, or None."""
    if api_key.revoked_at is not None:
        return "this API key was revoked"
    if account.deleted_at is not None:
        return "invalid API key"
    if account.disabled_at is not None:
        return f"account {account.id} is disabled; ask an admin to enable it"
    return None


def list_keys(
    session: Session, account: Account, page: PageRequest, account_id: str | None = None
) -> tuple[list[ApiKey], int]:
    """The account's keys, revoked ones included (an admin sees every account's)."""
    return access.page(session, account, ApiKey, page, SORTABLE, {"account_id": account_id})


def get_key(session: Session, account: Account, key_id: str) -> ApiKey:
    return access.get(session, account, ApiKey, key_id)


def revoke(session: Session, account: Account, key_id: str) -> ApiKey:
    """Revokes a key at once, ending its web sessions; revoking it again changes nothing.

    An account may revoke its last key, as on other clouds: an admin can issue it a new one.
    """
    api_key = get_key(session, account, key_id)
    if api_key.revoked_at is None:
        api_key.revoked_at = utcnow()
        session.add(api_key)
        end_sessions(session, key_ids=[api_key.id])
        session.commit()
    return api_key


def end_sessions(
    session: Session, *, key_ids: Collection[str] = (), account_id: str | None = None
) -> None:
    """Ends the web sessions opened with these keys, or with any key of the account."""
    keys = select(ApiKey.id).where(ApiKey.account_id == account_id) if account_id else None
    which = col(BrowserSession.api_key_id).in_(keys if keys is not None else list(key_ids))
    session.execute(
        sa.update(BrowserSession)
        .where(which, col(BrowserSession.ended_at).is_(None))
        .values(ended_at=utcnow())
    )

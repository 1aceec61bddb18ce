"""Signing in to the web UI: an API key, exchanged for a signed, HttpOnly session cookie.

The cookie holds the id of the API key used (never the key), a CSRF token and an expiry,
signed with HMAC-SHA256. Each request checks the signature and that the key still exists,
so revoking the key (or deleting the account) ends its web sessions too. The signing
secret is VDC_WEB_SECRET, or a random one kept 0600 in the data dir (replicas sharing a
database should share one secret).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass

from sqlmodel import Session, select

from app.config import Settings
from app.models import Account, ApiKey
from app.services.identity import accounts

COOKIE = "vdc_session"
LIFETIME = 12 * 3600


@dataclass(frozen=True)
class WebSession:
    account: Account
    key_id: str
    csrf: str


def secret(settings: Settings) -> bytes:
    if settings.web_secret:
        return settings.web_secret.encode()
    path = settings.data_dir / "web.secret"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(32).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process wrote it first: use theirs
        return path.read_bytes()
    with os.fdopen(fd, "wb") as out:
        out.write(value)
    return value


def sign_in(session: Session, settings: Settings, api_key: str) -> str | None:
    """The cookie value for a valid key, or None."""
    if accounts.authenticate(session, api_key.strip()) is None:
        return None
    digest = accounts.hash_key(api_key.strip())
    key = session.exec(select(ApiKey).where(ApiKey.key_hash == digest)).one()
    payload = {"k": key.id, "c": secrets.token_urlsafe(24), "e": int(time.time()) + LIFETIME}
    body = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()
    return f"{body}.{_mac(settings, body)}"


def read(session: Session, settings: Settings, cookie: str | None) -> WebSession | None:
    if not cookie or "." not in cookie:
        return None
    body, mac = cookie.rsplit(".", 1)
    if not hmac.compare_digest(mac, _mac(settings, body)):
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(body.encode()))
        key_id, csrf, expires = str(payload["k"]), str(payload["c"]), int(payload["e"])
    except (ValueError, KeyError, TypeError):
        return None
    if expires < time.time():
        return None
    key = session.get(ApiKey, key_id)
    account = session.get(Account, key.account_id) if key else None
    return WebSession(account, key_id, csrf) if account else None


def _mac(settings: Settings, body: str) -> str:
    return hmac.new(secret(settings), body.encode(), hashlib.sha256).hexdigest()

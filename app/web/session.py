"""Signing in to the web UI: an API key, exchanged for a server-side session and a signed,
HttpOnly cookie.

The cookie holds a random session token (never the key) and a CSRF token, signed with
HMAC-SHA256; the database holds the token's hash, its key and its expiry
(services/identity/browser_sessions.py). Each request is one lookup: signing out ends the
session on the server (a copied cookie stops working), revoking the key or disabling the
account ends all of its sessions. The signing secret is VDC_WEB_SECRET, or a random one
kept 0600 in the data dir (replicas sharing a database should share one secret).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass

from sqlmodel import Session

from app.config import Settings
from app.models import Account
from app.services.identity import api_keys, browser_sessions

COOKIE = "vdc_session"
LIFETIME = 12 * 3600


@dataclass(frozen=True)
class WebSession:
    account: Account
    key_id: str
    session_id: str
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


def sign_in(session: Session, settings: Settings, api_key: str) -> str:
    """The cookie value for a key that may act; Unauthorized (saying why) otherwise."""
    key, _account = api_keys.authenticate(session, api_key.strip())
    token = browser_sessions.start(session, key, LIFETIME)
    payload = {"s": token, "c": secrets.token_urlsafe(24)}
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
        token, csrf = str(payload["s"]), str(payload["c"])
    except (ValueError, KeyError, TypeError):
        return None
    found = browser_sessions.resolve(session, token)
    if found is None:
        return None
    browser, key, account = found
    return WebSession(account, key.id, browser.id, csrf)


def sign_out(session: Session, user: WebSession) -> None:
    browser_sessions.end(session, user.session_id)


def _mac(settings: Settings, body: str) -> str:
    return hmac.new(secret(settings), body.encode(), hashlib.sha256).hexdigest()

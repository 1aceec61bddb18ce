"""IMDSv2 session tokens: stateless, signed, bound to one instance, with an expiry.

A token is `<instance id>.<expiry unix time>.<HMAC-SHA256 of both>`, base64url-encoded, so
any replica that shares the secret can check it and nothing needs storing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

MIN_TTL, MAX_TTL = 1, 21600  # seconds, as EC2


class TokenError(ValueError):
    pass


def issue(secret: bytes, instance_id: str, ttl: int, now: float | None = None) -> str:
    if not MIN_TTL <= ttl <= MAX_TTL:
        raise TokenError(f"TTL must be between {MIN_TTL} and {MAX_TTL} seconds")
    expiry = int((now if now is not None else time.time()) + ttl)
    payload = f"{instance_id}.{expiry}"
    signature = hmac.new(secret, payload.encode(), hashlib.sha256).hexdigest()
    return base64.urlsafe_b64encode(f"{payload}.{signature}".encode()).decode().rstrip("=")


def verify(secret: bytes, token: str, instance_id: str, now: float | None = None) -> None:
    """Raises TokenError unless the token is ours, unexpired and for this instance."""
    try:
        padded = token + "=" * (-len(token) % 4)
        owner, expiry, signature = base64.urlsafe_b64decode(padded.encode()).decode().split(".")
        expires_at = int(expiry)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TokenError("malformed token") from exc
    expected = hmac.new(secret, f"{owner}.{expiry}".encode(), hashlib.sha256).hexdigest()
    # As bytes: compare_digest refuses str holding non-ASCII, which a client controls.
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        raise TokenError("bad signature")
    if owner != instance_id:
        raise TokenError("token belongs to another instance")
    if expires_at < (now if now is not None else time.time()):
        raise TokenError("token expired")

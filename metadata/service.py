"""The EC2 instance metadata service's answers, for one request at a time: who asks (a
lease, metadata/resolver.py), whether it may (IMDSv2 tokens, a fair share), and what it
gets (the instance's prebuilt answers, metadata/state.py).

What real clients need (cloud-init's Ec2 datasource, botocore): no redirects ever, dated
versions answer like `latest`, the token PUT never 404s and echoes the TTL header.

Both front ends call `MetadataService.handle`: the fast listener of `vdc serve`
(metadata/server.py) and the ASGI app (metadata/app.py, for tests and other servers).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from metadata import resolver, tokens, tree
from metadata.resolver import Lease
from metadata.state import MetadataState

TOKEN_HEADER = "x-aws-ec2-metadata-token"  # noqa: S105 - a header name
TTL_HEADER = "x-aws-ec2-metadata-token-ttl-seconds"


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "text/plain"
    headers: tuple[tuple[str, str], ...] = ()


def text(status: int, body: str, *headers: tuple[str, str]) -> Reply:
    return Reply(status, body.encode(), headers=headers)


FORBIDDEN = text(403, "Forbidden")
NOT_FOUND = text(404, "Not Found")
UNAUTHORIZED = text(401, "Unauthorized")
TOO_MANY = text(429, "Too Many Requests", ("Retry-After", "1"))
NOT_ALLOWED = text(405, "Method Not Allowed")
VERSIONS = text(200, "\n".join((*tree.VERSIONS, "latest")))


@dataclass
class Bucket:
    tokens: float
    at: float


@dataclass
class FairShare:
    """A token bucket per instance: a guest asking more than `rate` a second after a
    `burst` gets 429 (EC2's answer) instead of slowing the others down. The burst covers a
    boot's worth of questions (cloud-init asks a few dozen) many times over."""

    rate: float = 200.0
    burst: float = 1000.0
    buckets: dict[str, Bucket] = field(default_factory=dict)

    def allow(self, instance_id: str, now: float) -> bool:
        if self.rate <= 0:
            return True  # unlimited (VDC_METADATA_RATE=0)
        bucket = self.buckets.get(instance_id)
        if bucket is None:
            bucket = self.buckets[instance_id] = Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True


class MetadataService:
    def __init__(
        self,
        state: MetadataState,
        token_secret: str = "",
        proxy_secret: str = "",
        fair_share: FairShare | None = None,
    ) -> None:
        self.state = state
        # Without a configured secret, tokens are good for this process only (like a
        # restart of EC2's IMDS: clients simply ask for a new one).
        self.signing_key = token_secret.encode() or secrets.token_bytes(32)
        self.proxy_key = proxy_secret.encode() or None
        self.fair_share = fair_share or FairShare()

    def handle(
        self, method: str, path: str, client: str, server: str, headers: Mapping[str, str]
    ) -> Reply:
        """`headers`: lower-case names. `client`/`server`: the connection's two addresses."""
        if method == "PUT":
            return self._token(path, client, server, headers)
        if method not in ("GET", "HEAD"):
            return NOT_ALLOWED
        lease = self._who(client, server, headers)
        if lease is None:
            return NOT_FOUND
        if not self.fair_share.allow(lease.instance_id, time.monotonic()):
            return TOO_MANY
        token = headers.get(TOKEN_HEADER)
        if token is not None:
            try:
                tokens.verify(self.signing_key, token, lease.instance_id)
            except tokens.TokenError:
                return UNAUTHORIZED
        elif lease.http_tokens == "required":
            return UNAUTHORIZED
        version, _, rest = path.strip("/").partition("/")
        if not version:
            return VERSIONS
        if version != "latest" and version not in tree.VERSIONS:
            return NOT_FOUND
        prebuilt = self.state.prebuilt(lease.instance_id)
        if prebuilt is None:
            return NOT_FOUND
        answer = prebuilt.answer(rest)
        return Reply(answer.status, answer.body, answer.content_type)

    def _token(self, path: str, client: str, server: str, headers: Mapping[str, str]) -> Reply:
        if path.strip("/") != "latest/api/token":
            return NOT_ALLOWED if not path.strip("/").endswith("api/token") else FORBIDDEN
        # EC2 refuses a forwarded token request; vdc's own signed proxies are let through.
        if resolver.FORWARDED_HEADER in headers and not resolver.signed_forward(
            headers, self.proxy_key
        ):
            return FORBIDDEN
        ttl = headers.get(TTL_HEADER, "")
        # isascii: str.isdigit() also takes "²" and other digits int() then refuses.
        valid = ttl.isascii() and ttl.isdigit()
        if not valid or not tokens.MIN_TTL <= int(ttl) <= tokens.MAX_TTL:
            return text(400, "Bad Request")
        lease = self._who(client, server, headers)
        if lease is None:
            return FORBIDDEN  # never 404 here: cloud-init reads that as "no IMDS"
        if not self.fair_share.allow(lease.instance_id, time.monotonic()):
            return TOO_MANY
        issued = tokens.issue(self.signing_key, lease.instance_id, int(ttl))
        return text(200, issued, (TTL_HEADER, ttl))

    def _who(self, client: str, server: str, headers: Mapping[str, str]) -> Lease | None:
        forwarded = resolver.signed_forward(headers, self.proxy_key)
        if forwarded is not None:
            instance_id, address = forwarded
            lease = self.state.lease(address)
            return lease if lease and lease.instance_id == instance_id else None
        lease = self.state.lease(client)
        return lease if lease and resolver.accept_direct(lease, server) else None

"""The EC2 instance metadata service: its own FastAPI app, on its own listener.

Guests ask `http://169.254.169.254/...`; each answer is computed from the asking
instance's facts (metadata/facts.py) by the pure tree renderer (metadata/tree.py).
What real clients need (cloud-init's Ec2 datasource, botocore): no redirects ever, dated
versions answer like `latest`, the token PUT never 404s and echoes the TTL header.
"""

from __future__ import annotations

import secrets
from typing import TypeVar

import sqlalchemy as sa
from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from metadata import cache, resolver, tokens, tree

TOKEN_HEADER = "x-aws-ec2-metadata-token"  # noqa: S105 - a header name
TTL_HEADER = "x-aws-ec2-metadata-token-ttl-seconds"
T = TypeVar("T")


def create_metadata_app(
    engine: sa.Engine, region: str, token_secret: str = "", proxy_secret: str = ""
) -> FastAPI:
    # Without a configured secret, tokens are good for this process only (like a restart
    # of EC2's IMDS, clients simply ask for a new one).
    signing_key = token_secret.encode() or secrets.token_bytes(32)
    proxy_key = proxy_secret.encode() or None
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, redirect_slashes=False)

    leases = cache.lease_cache(engine)
    trees = cache.tree_cache(engine, region)

    async def cached(store: cache.TtlCache[T], key: str) -> T:
        value = store.peek(key)
        if value is cache.MISSING:  # the database only on a miss, off the event loop
            return await run_in_threadpool(store.load, key)
        return value  # type: ignore[return-value]

    async def who(request: Request) -> resolver.Lease | None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        forwarded = resolver.signed_forward(headers, proxy_key)
        if forwarded is not None:
            instance_id, address = forwarded
            lease = await cached(leases, address)
            return lease if lease and lease.instance_id == instance_id else None
        client = request.client.host if request.client else ""
        server = request.scope.get("server") or ("", 0)
        lease = await cached(leases, client)
        return lease if lease and resolver.accept_direct(lease, server[0]) else None

    @app.put("/{version}/api/token", include_in_schema=False)
    async def token(version: str, request: Request) -> Response:
        if version != "latest":
            return text(403, "Forbidden")
        # EC2 refuses a forwarded token request; vdc's own signed proxies are let through.
        headers = {k.lower(): v for k, v in request.headers.items()}
        if resolver.FORWARDED_HEADER in headers and not resolver.signed_forward(headers, proxy_key):
            return text(403, "Forbidden")
        ttl = request.headers.get(TTL_HEADER, "")
        # isascii: str.isdigit() also takes "²" and other digits int() then refuses.
        valid = ttl.isascii() and ttl.isdigit()
        if not valid or not tokens.MIN_TTL <= int(ttl) <= tokens.MAX_TTL:
            return text(400, "Bad Request")
        lease = await who(request)
        if lease is None:
            return text(403, "Forbidden")  # never 404 here: cloud-init reads that as "no IMDS"
        issued = tokens.issue(signing_key, lease.instance_id, int(ttl))
        return Response(issued, media_type="text/plain", headers={TTL_HEADER: ttl})

    @app.api_route("/{path:path}", methods=["GET", "HEAD"], include_in_schema=False)
    async def lookup(path: str, request: Request) -> Response:
        lease = await who(request)
        if lease is None:
            return text(404, "Not Found")
        token_value = request.headers.get(TOKEN_HEADER)
        if token_value is not None:
            try:
                tokens.verify(signing_key, token_value, lease.instance_id)
            except tokens.TokenError:
                return text(401, "Unauthorized")
        elif lease.http_tokens == "required":
            return text(401, "Unauthorized")
        instance_tree = await cached(trees, lease.tree_key)
        if instance_tree is None:
            return text(404, "Not Found")
        version, _, rest = path.strip("/").partition("/")
        if not version:
            return text(200, "\n".join((*tree.VERSIONS, "latest")))
        if version != "latest" and version not in tree.VERSIONS:
            return text(404, "Not Found")
        answer = tree.render(instance_tree, rest)
        return Response(answer.body, status_code=answer.status, media_type=answer.content_type)

    @app.api_route(
        "/{path:path}",
        methods=["POST", "DELETE", "PATCH", "PUT", "OPTIONS"],
        include_in_schema=False,
    )
    def other(path: str) -> Response:
        return text(405, "Method Not Allowed")

    return app


def text(status: int, body: str) -> Response:
    return Response(body, status_code=status, media_type="text/plain")

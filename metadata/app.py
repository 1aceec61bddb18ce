"""The metadata service as a bare ASGI app (no routing, no dependency injection): for the
test suites and for anyone who serves it with an ASGI server of their own. `vdc serve`
runs the faster listener of metadata/server.py, in a process of its own; both answer
through the same MetadataService.

Here the state is refreshed on the request that finds it older than REFRESH seconds
(there is no loop of its own to do it in the background).
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from starlette.types import Receive, Scope, Send

from metadata.service import FairShare, MetadataService, Reply
from metadata.state import MetadataState

REFRESH = 0.2


class MetadataApp:
    def __init__(self, service: MetadataService) -> None:
        self.service = service
        self._refreshed = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if time.monotonic() - self._refreshed > REFRESH:
            self.service.state.refresh()
            self._refreshed = time.monotonic()
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope["headers"]
        }
        client = (scope.get("client") or ("", 0))[0]
        server = (scope.get("server") or ("", 0))[0]
        reply = self.service.handle(scope["method"], scope["path"], client, server, headers)
        await send_reply(send, reply, head=scope["method"] == "HEAD")


async def send_reply(send: Send, reply: Reply, head: bool = False) -> None:
    headers = [
        (b"content-type", reply.content_type.encode()),
        (b"content-length", str(len(reply.body)).encode()),
        *((name.lower().encode(), value.encode()) for name, value in reply.headers),
    ]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else reply.body})


def create_metadata_app(
    engine: sa.Engine,
    region: str,
    token_secret: str = "",
    proxy_secret: str = "",
    fair_share: FairShare | None = None,
) -> MetadataApp:
    state = MetadataState(engine, region)
    return MetadataApp(MetadataService(state, token_secret, proxy_secret, fair_share))

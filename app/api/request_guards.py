"""Guards in front of every route, before a body is read or a value reaches the database.

- Size: JSON and form bodies over MAX_BODY are answered 413, whether they say their length
  or stream it. Image uploads (application/octet-stream) stream to disk and have their own
  limit (VDC_MAX_IMAGE_SIZE), so they pass.
- NUL: no text vdc stores may hold a NUL character (PostgreSQL refuses them outright), so a
  path, query or JSON/form body carrying one is answered 422 here, once for every route.
  Binary user-data goes base64-encoded (`user_data_base64`) and may hold any byte.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY = 1024 * 1024  # the largest sane JSON here: 16 KiB of user-data, 100 rules
_NUL_MARKS = (b"\x00", b"\\u0000", b"%00")


class RequestGuards:
    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _has_nul(scope.get("raw_path") or scope["path"].encode()) or _has_nul(
            scope.get("query_string", b"")
        ):
            await _answer(send, 422, "validation_error", "text may not contain NUL characters")
            return
        headers = {key.decode("latin-1").lower(): value for key, value in scope["headers"]}
        content_type = headers.get("content-type", b"").decode("latin-1").split(";")[0].strip()
        if content_type == "application/octet-stream":
            await self.app(scope, receive, send)
            return
        declared = headers.get("content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > self.limit:
            await _too_large(send, self.limit)
            return
        await self._guarded(scope, receive, send)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Reads the whole (small) body first, so a refusal is sent before the app starts."""
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.limit:
                await _too_large(send, self.limit)
                return
            if not message.get("more_body", False):
                break
        if _has_nul(bytes(body)):
            await _answer(send, 422, "validation_error", "text may not contain NUL characters")
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _has_nul(data: bytes) -> bool:
    lowered = data.lower()
    return any(mark in lowered for mark in _NUL_MARKS)


async def _too_large(send: Send, limit: int) -> None:
    await _answer(send, 413, "payload_too_large", f"request body over {limit} bytes")


async def _answer(send: Send, status: int, error_type: str, detail: str) -> None:
    body = json.dumps({"type": error_type, "detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})

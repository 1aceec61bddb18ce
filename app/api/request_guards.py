"""Guards in front of every route, before a body is read or a value reaches the database.

- Who: a request that may carry a body (POST, PUT, PATCH, DELETE) must be signed in (an
  API key, or a web session) before a byte of its body is read; the sign-in form is the one
  exception. An anonymous client cannot make the server read, buffer or parse anything.
- Size: every body is limited to MAX_BODY, whatever its content type says, answered 413
  whether it declares its length or streams it. Only the two image upload routes stream
  larger bodies (to disk, up to VDC_MAX_IMAGE_SIZE), and only for a signed-in caller.
- NUL: no text vdc stores may hold a NUL character (PostgreSQL refuses them outright), so a
  path, query or JSON/form body carrying one is answered 422 here, once for every route.
  Binary user-data goes base64-encoded (`user_data_base64`) and may hold any byte.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY = 1024 * 1024  # the largest sane JSON here: 16 KiB of user-data, 100 rules
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Routes whose body is an image, streamed to disk by the route under its own limit.
UPLOAD_ROUTES = frozenset({("POST", "/api/v1/images"), ("POST", "/images/upload")})
# Routes that take a body from someone not signed in yet.
OPEN_ROUTES = frozenset({("POST", "/login")})
_NUL_MARKS = (b"\x00", b"\\u0000", b"%00")
_UPLOAD_PATHS = frozenset(path for _, path in UPLOAD_ROUTES)

# None when the request may send a body, else why not (the 401's detail).
SignedIn = Callable[[Scope], Awaitable[str | None]]


class RequestGuards:
    def __init__(self, app: ASGIApp, signed_in: SignedIn, limit: int = MAX_BODY) -> None:
        self.app = app
        self.signed_in = signed_in
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
        route = (scope["method"], scope["path"].rstrip("/") or "/")
        if scope["method"] in BODY_METHODS and route not in OPEN_ROUTES:
            refusal = await self.signed_in(scope)
            if refusal is not None:
                await _not_signed_in(scope, send, refusal)
                return
        if route in UPLOAD_ROUTES:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "PUT" and route[1] in _UPLOAD_PATHS:
            await _put_is_not_upload(
                send, b"GET, POST" if route[1].startswith("/api/") else b"POST"
            )
            return
        headers = {key.decode("latin-1").lower(): value for key, value in scope["headers"]}
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


async def _put_is_not_upload(send: Send, allow: bytes) -> None:
    """`curl -T FILE` without `-X POST` sends a PUT: say what to do, before reading the file
    (which would otherwise be refused for its size or its NUL bytes, a puzzling answer)."""
    await _answer(
        send,
        405,
        "http_error",
        "Method Not Allowed: images are uploaded with POST (curl -X POST -T FILE ...; "
        "curl -T alone sends PUT)",
        [(b"allow", allow)],
    )


async def _not_signed_in(scope: Scope, send: Send, refusal: str) -> None:
    """The API answers 401 as its routes do; a page sends the browser to the sign-in form."""
    if scope["path"].startswith("/api/"):
        await _answer(send, 401, "unauthorized", refusal, [(b"www-authenticate", b"Bearer")])
        return
    target = f"/login?next={quote(scope['path'])}".encode()
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [(b"location", target), (b"content-length", b"0")],
        }
    )
    await send({"type": "http.response.body", "body": b""})


async def _answer(
    send: Send,
    status: int,
    error_type: str,
    detail: str,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = json.dumps({"type": error_type, "detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(extra_headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})

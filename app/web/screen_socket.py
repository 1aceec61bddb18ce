"""The WebSocket that carries an instance's screen (RFB) to a client: the web UI's Screen
view, or any client that asked the API for a console URL.

Before the socket is accepted: the one-time ticket must be for this instance, unused and
unexpired; a ticket the web UI asked for also needs the same signed-in browser session
(its cookie) and a page of this site (Origin); one asked for with an API key needs that key
to still be valid. A refusal is an HTTP answer with the API's {"type", "detail"} body, and
does not use the ticket up. Once open, the screen closes when the instance stops, when the
session ends or the key is revoked, or when either side goes.
"""

from __future__ import annotations

import contextlib
import logging
from urllib.parse import urlsplit

import sqlalchemy as sa
from fastapi import APIRouter, WebSocket
from fastapi.responses import JSONResponse
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect

from app.config import Settings
from app.errors import AppError, Forbidden, Unauthorized
from app.models import Account, ApiKey
from app.services import host_uris
from app.services.compute import console_proxy, consoles, display
from app.services.compute.consoles import Admitted
from app.services.identity import api_keys
from app.web import session as web_session
from hypervisor.errors import HypervisorError

router = APIRouter(include_in_schema=False)
log = logging.getLogger("vdc.console")
SOCKET_ROUTE = "instance_screen_socket"


class _Client:
    """Starlette's WebSocket as the proxy's ClientSocket."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket

    async def receive_bytes(self) -> bytes | None:
        try:
            message = await self.websocket.receive()
        except (WebSocketDisconnect, RuntimeError):
            return None
        if message["type"] == "websocket.disconnect":
            return None
        data = message.get("bytes")
        if data is None:  # RFB travels in binary messages; a text one is taken as its bytes
            return (message.get("text") or "").encode()
        return bytes(data)

    async def send_bytes(self, data: bytes) -> None:
        await self.websocket.send_bytes(data)

    async def close(self, code: int, reason: str) -> None:
        await self.websocket.close(code, reason)


@router.websocket("/instances/{instance_id}/screen/socket", name=SOCKET_ROUTE)
async def screen_socket(websocket: WebSocket, instance_id: str, ticket: str = "") -> None:
    state = websocket.app.state
    engine: sa.Engine = state.engine
    settings: Settings = state.settings
    slots: console_proxy.Slots = state.console_slots
    cookie = websocket.cookies.get(web_session.COOKIE)
    origin, host = websocket.headers.get("origin"), websocket.headers.get("host", "")
    with contextlib.ExitStack() as held:
        try:
            admitted = await run_in_threadpool(
                _admit, engine, settings, slots, held, instance_id, ticket, cookie, origin, host
            )
        except AppError as refusal:
            await _deny(websocket, refusal)
            return
        offered = websocket.scope.get("subprotocols") or []
        await websocket.accept(subprotocol="binary" if "binary" in offered else None)
        client = _Client(websocket)
        try:
            target = await run_in_threadpool(display.target, admitted.host, instance_id)
        except HypervisorError as error:
            hidden = host_uris.hide_host(str(error), admitted.host)
            target, why = None, f"cannot read the screen's place from its host: {hidden}"
        else:
            why = (
                f"instance {instance_id} shows no screen on its host now (one started before "
                "vdc gave instances screens gets one at its next start)"
            )
        if target is None:
            await console_proxy.refuse_screen(client, why)
            return

        async def still_open() -> str | None:
            return await run_in_threadpool(_why_closed, engine, settings, admitted, cookie)

        why = await console_proxy.serve(client, target, still_open)
        log.info("screen of %s closed: %s", instance_id, why)


def _admit(
    engine: sa.Engine,
    settings: Settings,
    slots: console_proxy.Slots,
    held: contextlib.ExitStack,
    instance_id: str,
    token: str,
    cookie: str | None,
    origin: str | None,
    host: str,
) -> Admitted:
    """Checks the ticket and the asker, takes a slot (held until the screen closes) and
    only then uses the ticket up; AppError saying why not."""
    with Session(engine) as session:
        ticket = consoles.check(session, token, instance_id)
        refusal = _asker_refusal(
            session, settings, ticket.web_session_id, ticket.api_key_id, cookie
        )
        if refusal is not None:
            raise refusal
        if ticket.web_session_id is not None and not _same_site(origin, host):
            raise Forbidden(f"a screen of this site opens from its own pages, not {origin}")
        held.enter_context(slots.take(ticket.account_id, instance_id))
        return consoles.redeem(session, ticket)


def _asker_refusal(
    session: Session,
    settings: Settings,
    web_session_id: str | None,
    api_key_id: str | None,
    cookie: str | None,
) -> AppError | None:
    """Why the one the ticket was given to may not open (or keep open) the screen: the
    same signed-in browser for a web UI ticket, a valid key for an API one."""
    if web_session_id is not None:
        signed_in = web_session.read(session, settings, cookie)
        if signed_in is None:
            return Unauthorized("not signed in: this console ticket needs the web UI session")
        if signed_in.session_id != web_session_id:
            return Forbidden("this console ticket was given to another web UI session")
        return None
    key = session.get(ApiKey, api_key_id) if api_key_id else None
    account = session.get(Account, key.account_id) if key is not None else None
    if key is None or account is None:
        return Unauthorized("the API key this console ticket was asked for with is gone")
    why = api_keys.refused(key, account)
    return Unauthorized(why) if why else None


def _why_closed(
    engine: sa.Engine, settings: Settings, admitted: Admitted, cookie: str | None
) -> str | None:
    with Session(engine) as session:
        why = consoles.why_closed(session, admitted)
        if why is not None:
            return why
        refusal = _asker_refusal(
            session, settings, admitted.web_session_id, admitted.api_key_id, cookie
        )
        return None if refusal is None else refusal.detail


def _same_site(origin: str | None, host: str) -> bool:
    """A browser names the page that opens a WebSocket in Origin: it must be this host
    (another site's page cannot use a visitor's session, even with a ticket)."""
    if origin is None:
        return True  # not a browser: the ticket and the session cookie decide
    try:
        return bool(host) and urlsplit(origin).netloc.lower() == host.lower()
    except ValueError:
        return False


async def _deny(websocket: WebSocket, refusal: AppError) -> None:
    """The refusal as an HTTP answer where the server can send one (uvicorn can), else a
    policy-violation close with the reason."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        body = {"type": refusal.type, "detail": refusal.detail}
        await websocket.send_denial_response(JSONResponse(body, refusal.status_code))
    else:
        await websocket.close(1008, refusal.detail[:120])

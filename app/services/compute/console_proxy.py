"""vdc's console proxy (the Nova novncproxy pattern): a client's WebSocket joined to one
instance's screen on its host.

The client never names where to connect: the target is the screen of the instance its
ticket was for, found through libvirt (compute/display.py). The RFB security handshake is
made on both sides (compute/rfb.py), then bytes are copied both ways until either side
ends, or until `still_open` gives a reason to stop (the instance stopped, the session
ended). How many screens may be open at once is bounded here, per instance, per account
and in all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol

from app.errors import AppError
from app.services.compute import rfb
from app.services.compute.display import DisplayTarget

log = logging.getLogger("vdc.console")

MAX_PER_INSTANCE = 4  # people watching one screen together
MAX_PER_ACCOUNT = 16
CONNECT_TIMEOUT = 10.0  # seconds to reach the screen on its host
HANDSHAKE_TIMEOUT = 30.0  # seconds for both sides' RFB handshakes
WATCH_SECONDS = 2.0  # how often an open screen asks whether it may stay open
_CHUNK = 64 * 1024


class TooManyConsoles(AppError):
    status_code = 429
    type = "too_many_consoles"


class ClientSocket(Protocol):
    """The client's side: a WebSocket carrying binary messages (the web layer adapts
    its own WebSocket to this)."""

    async def receive_bytes(self) -> bytes | None:
        """The next message's bytes; None once the client has gone."""
        ...

    async def send_bytes(self, data: bytes) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


class Slots:
    """Open screens counted per instance, per account and in all (this process's)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._lock = threading.Lock()
        self._instances: Counter[str] = Counter()
        self._accounts: Counter[str] = Counter()

    @contextlib.contextmanager
    def take(self, account_id: str, instance_id: str) -> Iterator[None]:
        """Holds one slot while the block runs; TooManyConsoles (429) when none is free."""
        with self._lock:
            if sum(self._instances.values()) >= self.total:
                raise TooManyConsoles(f"{self.total} screens are open on this server: retry later")
            if self._accounts[account_id] >= MAX_PER_ACCOUNT:
                raise TooManyConsoles(
                    f"account {account_id} has {MAX_PER_ACCOUNT} screens open: close one first"
                )
            if self._instances[instance_id] >= MAX_PER_INSTANCE:
                raise TooManyConsoles(
                    f"instance {instance_id} has {MAX_PER_INSTANCE} screens open: close one first"
                )
            self._instances[instance_id] += 1
            self._accounts[account_id] += 1
        try:
            yield
        finally:
            with self._lock:
                self._instances[instance_id] -= 1
                self._accounts[account_id] -= 1
                self._instances += Counter()  # drops the zeros
                self._accounts += Counter()


class _ClientChannel:
    """The client's messages as a byte stream, for the handshake (messages may split or
    join the handshake's fields any way)."""

    def __init__(self, client: ClientSocket) -> None:
        self.client = client
        self.pending = bytearray()

    async def readexactly(self, size: int) -> bytes:
        while len(self.pending) < size:
            data = await self.client.receive_bytes()
            if data is None:
                raise rfb.RfbError("the client went away during the handshake")
            self.pending += data
        head = bytes(self.pending[:size])
        del self.pending[:size]
        return head

    async def write(self, data: bytes) -> None:
        await self.client.send_bytes(data)


class _ServerChannel:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def readexactly(self, size: int) -> bytes:
        try:
            return await self.reader.readexactly(size)
        except asyncio.IncompleteReadError as error:
            raise rfb.RfbError("the screen closed the connection during the handshake") from error

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()


async def serve(
    client: ClientSocket,
    target: DisplayTarget,
    still_open: Callable[[], Awaitable[str | None]],
) -> str:
    """Joins an accepted client to the screen until one side ends, then closes the client;
    returns why it ended. A screen that cannot be reached is told to the client as an RFB
    refusal."""
    why = await _serve(client, target, still_open)
    with contextlib.suppress(Exception):  # the client may be gone already
        await client.close(1000, why[:120])
    return why


async def _serve(
    client: ClientSocket,
    target: DisplayTarget,
    still_open: Callable[[], Awaitable[str | None]],
) -> str:
    client_side = _ClientChannel(client)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(target.address, target.port), CONNECT_TIMEOUT
        )
    except (OSError, TimeoutError) as error:
        why = f"cannot reach the screen on its host ({type(error).__name__})"
        await _refuse(client_side, why)
        return why
    try:
        try:
            await asyncio.wait_for(
                rfb.authenticate_to_server(_ServerChannel(reader, writer), target.password),
                HANDSHAKE_TIMEOUT,
            )
        except (rfb.RfbError, OSError, TimeoutError) as error:
            why = str(error) or "the screen did not answer"
            await _refuse(client_side, why)
            return why
        try:
            await asyncio.wait_for(rfb.offer_no_authentication(client_side), HANDSHAKE_TIMEOUT)
        except (rfb.RfbError, TimeoutError) as error:
            return str(error) or "the client did not answer"
        if client_side.pending:  # sent along with its last handshake message (ClientInit)
            writer.write(bytes(client_side.pending))
        return await _copy(client, reader, writer, still_open)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _copy(
    client: ClientSocket,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    still_open: Callable[[], Awaitable[str | None]],
) -> str:
    async def upstream() -> str:
        while (data := await client.receive_bytes()) is not None:
            writer.write(data)
            await writer.drain()
        return "the client closed the screen"

    async def downstream() -> str:
        while data := await reader.read(_CHUNK):
            await client.send_bytes(data)
        return "the screen closed (the guest stopped)"

    async def watch() -> str:
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            why = await still_open()
            if why is not None:
                return why

    tasks = [asyncio.ensure_future(job()) for job in (upstream, downstream, watch)]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finished = next(iter(done))
    error = finished.exception()
    return f"connection lost: {error}" if error is not None else str(finished.result())


async def refuse_screen(client: ClientSocket, why: str) -> None:
    """Tells an accepted client why there is no screen (an RFB refusal), then closes it."""
    await _refuse(_ClientChannel(client), why)
    with contextlib.suppress(Exception):
        await client.close(1000, why[:120])


async def _refuse(client: rfb.Channel, why: str) -> None:
    with contextlib.suppress(rfb.RfbError, OSError, TimeoutError):
        await asyncio.wait_for(rfb.refuse(client, why), HANDSHAKE_TIMEOUT)

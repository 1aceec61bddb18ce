"""The metadata listener of `vdc serve`: a process of its own, an event loop of its own
(uvloop), an HTTP parser in C (httptools), and answers prebuilt in memory.

Why a process: every guest talks to it, so nothing they do may reach the API, the web UI
or the job worker. In its own process it has its own file descriptors (a flood of
connections cannot make the API fail with "Too many open files") and its own GIL (a busy
API cannot hold up its answers); its state is rebuilt from the database in the background
(metadata/state.py), never on the request path of an instance it knows.

What a connection may hold of it (metadata/limits.py): a share of the open connections,
and a few seconds to send each request head; past the caps it is refused at once.

It counts its answers in memory and publishes them once a second to a file the API's
`GET /metrics` reads (metadata/stats.py).

    python -m metadata.server     (started and stopped by `vdc serve`; VDC_* settings)
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from typing import Any

import httptools

from app.config import Settings, split_bind
from app.db import METADATA_POOL, engine_for
from metadata.limits import ConnectionLimits
from metadata.service import FairShare, MetadataService, Reply
from metadata.state import MetadataState
from metadata.stats import Publisher, RequestStats, write_snapshot

log = logging.getLogger("vdc.metadata")
REFRESH_SECONDS = 0.25
SWITCH_INTERVAL = 0.0005  # seconds: see main()
PUBLISH_SECONDS = 1.0  # how often the counts reach GET /metrics (when they changed)
MAX_HEAD = 16 * 1024  # bytes of request head before the answer is 431
# A guest past its fair share (429) or past its connections: its connection is not read
# for this long, so a guest that asks again at once costs the others nothing meanwhile.
PENALTY_SECONDS = 1.0
_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
}
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def encode(reply: Reply, keep_alive: bool, head: bool = False) -> bytes:
    lines = [
        b"HTTP/1.1 %d %s" % (reply.status, _REASONS.get(reply.status, b"")),
        b"Content-Type: " + reply.content_type.encode(),
        b"Content-Length: %d" % len(reply.body),
        *(name.encode() + b": " + value.encode() for name, value in reply.headers),
    ]
    if not keep_alive:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + (b"" if head else reply.body)


class MetadataProtocol(asyncio.Protocol):
    def __init__(
        self, service: MetadataService, limits: ConnectionLimits, stats: RequestStats
    ) -> None:
        self.service = service
        self.limits = limits
        self.stats = stats
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.source = ""
        self.local = ""
        self.url = b""
        self.headers: dict[str, str] = {}
        self.head_bytes = 0
        self.deadline: asyncio.TimerHandle | None = None
        self.admitted = False

    # --- the connection -----------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.source = str(peer[0]) if peer else ""
        self.local = str(sock[0]) if sock else ""
        refusal = self.limits.admit(self.source)
        if refusal is not None:
            self.stats.refused(refusal.status)  # an operator sees a guest held back
            # Answered a second later, unread meanwhile: a client that reconnects at once
            # would otherwise have the listener accept and refuse in a tight loop. So many
            # waiting that they would cost file descriptors: refused at once.
            if self.limits.refusing >= self.limits.max_connections:
                transport.write(refusal.answer)
                transport.close()
                return
            self.limits.refusing += 1
            transport.pause_reading()
            loop = asyncio.get_running_loop()
            loop.call_later(PENALTY_SECONDS, self._refuse, transport, refusal.answer, self.limits)
            return
        self.admitted = True
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.admitted:
            self.limits.release(self.source)
            self.admitted = False

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.head_bytes += len(data)
        if self.head_bytes > MAX_HEAD:
            self.transport.write(_TOO_LARGE)
            self.transport.close()
            self.stats.refused(431)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.transport.close()
        except httptools.HttpParserError:
            self.transport.write(encode(Reply(400, b"Bad Request"), keep_alive=False))
            self.transport.close()
            self.stats.refused(400)

    # --- httptools' callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url, self.headers = b"", {}

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._disarm()

    def on_message_complete(self) -> None:
        assert self.transport is not None
        started = time.perf_counter()
        method = self.parser.get_method().decode("latin-1")
        path = httptools.parse_url(self.url).path.decode("latin-1")
        reply = self.service.handle(method, path, self.source, self.local, self.headers)
        keep_alive = self.parser.should_keep_alive()
        self.transport.write(encode(reply, keep_alive, head=method == "HEAD"))
        self.stats.observe(path, reply.status, time.perf_counter() - started)
        if not keep_alive:
            self.transport.close()
            return
        self.head_bytes = 0
        if reply.status == 429:  # past its fair share: its next question waits
            self.transport.pause_reading()
            asyncio.get_running_loop().call_later(PENALTY_SECONDS, self._resume)
        self._arm()  # the next request's head, or idle: within the deadline again

    def _resume(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    @staticmethod
    def _refuse(transport: asyncio.Transport, refusal: bytes, limits: ConnectionLimits) -> None:
        limits.refusing -= 1
        if not transport.is_closing():
            transport.write(refusal)
            transport.close()

    # --- the head deadline ---------------------------------------------------------------

    def _arm(self) -> None:
        self._disarm()
        loop = asyncio.get_running_loop()
        self.deadline = loop.call_later(self.limits.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _too_slow(self) -> None:
        self.deadline = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    engine = engine_for(settings, METADATA_POOL)
    state = MetadataState(engine, settings.region)
    service = MetadataService(
        state,
        settings.metadata_token_secret,
        settings.metadata_proxy_secret,
        FairShare(rate=settings.metadata_rate, burst=settings.metadata_burst),
    )
    limits = ConnectionLimits(
        max_connections=settings.metadata_max_connections,
        max_per_source=settings.metadata_max_connections_per_source,
        header_timeout=settings.metadata_header_timeout,
    )
    stats = RequestStats()
    publisher = Publisher(stats, settings.metadata_metrics_file)
    # Zeros before the first connection: a scrape never reads a gone process's counts.
    _publish(publisher)
    loop = asyncio.get_running_loop()
    host, port = split_bind(settings.metadata_bind)
    server = await loop.create_server(
        lambda: MetadataProtocol(service, limits, stats),
        host,
        port,
        reuse_address=True,
        backlog=1024,
    )
    # Warmed in the background: until then an instance's first question reads the
    # database once (state.lease), as for an instance newer than the last refresh.
    refresher = asyncio.create_task(_refresh_forever(state, stop))
    publishing = asyncio.create_task(_publish_forever(publisher, stop))
    try:
        await stop.wait()
    finally:
        refresher.cancel()
        publishing.cancel()
        server.close()
        await server.wait_closed()
        _publish(publisher)  # the last second's answers too
        engine.dispose()


async def _refresh_forever(state: MetadataState, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        try:
            await loop.run_in_executor(None, state.refresh)
        except Exception:
            log.exception("reading the instances failed; answers stay as they were")
        await asyncio.sleep(REFRESH_SECONDS)


async def _publish_forever(publisher: Publisher, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        await asyncio.sleep(PUBLISH_SECONDS)
        data = publisher.due()  # taken here, on the loop thread the counts belong to
        if data is not None:
            try:
                await loop.run_in_executor(None, write_snapshot, publisher.path, data)
            except OSError:
                log.exception("writing the metadata metrics failed; trying again in a second")
                publisher.published = -1


def _publish(publisher: Publisher) -> None:
    try:
        publisher.publish()
    except OSError:
        log.exception("writing the metadata metrics failed")


def main() -> None:
    """Runs until SIGTERM, or until `vdc serve` (its parent) goes away."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - a dependency; plain asyncio still works
        pass
    # The answers are served on the loop's thread; the refresh (database reads, rebuilding
    # answers) runs on another. A thread that wants the GIL waits for the holder's switch
    # interval, 5 ms by default: that wait was the metadata p99 while launches kept the
    # refresh busy. Half a millisecond bounds it; the cost is more frequent switches.
    sys.setswitchinterval(SWITCH_INTERVAL)
    settings = Settings()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        parent = os.getppid()

        async def watch_parent() -> None:
            while not stop.is_set():
                if os.getppid() != parent:  # vdc serve died without telling us
                    stop.set()
                await asyncio.sleep(1)

        watcher = asyncio.create_task(watch_parent())
        await serve(settings, stop)
        watcher.cancel()

    asyncio.run(run())
    sys.exit(0)


if __name__ == "__main__":
    main()

"""What one guest (or anything else on a host's networks) may hold of the metadata listener.

The listener faces every guest, so nothing a guest does may starve the API, the job worker
or the other guests of the process's sockets and file descriptors:
- a global cap on open connections and a cap per source address: past either, a new
  connection gets a short refusal (503 or 429) and is closed at once;
- a header deadline: a connection must send a complete request head within
  `header_timeout` seconds of connecting, and of its previous answer (which also ends idle
  keep-alive connections); a slow or silent client is disconnected.

`guarded()` adds these to a uvicorn HTTP protocol class (h11 or httptools), whose request
handling stays as it is.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
_TOO_MANY = (
    b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nConnection: close\r\n"
    b"Content-Length: 0\r\n\r\n"
)


@dataclass
class ConnectionLimits:
    max_connections: int = 512
    max_per_source: int = 16
    header_timeout: float = 5.0
    open: Counter[str] = field(default_factory=Counter)

    def admit(self, source: str) -> bytes | None:
        """Counts the connection in; returns the refusal to send instead when over a cap.
        Every admitted connection must be released exactly once."""
        if sum(self.open.values()) >= self.max_connections:
            return _BUSY
        if self.open[source] >= self.max_per_source:
            return _TOO_MANY
        self.open[source] += 1
        return None

    def release(self, source: str) -> None:
        self.open[source] -= 1
        if self.open[source] <= 0:
            del self.open[source]


def guarded(base: type[asyncio.Protocol], limits: ConnectionLimits) -> type[asyncio.Protocol]:
    """A subclass of uvicorn's HTTP protocol `base` that enforces `limits`.

    uvicorn's protocols set `self.cycle` when a request's head is complete and call
    `on_response_complete` when its answer is sent; a connection is "waiting for a head"
    whenever it has no cycle or its cycle is answered."""

    class Guarded(base):  # type: ignore[valid-type,misc]
        _source: str | None = None
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            peer = transport.get_extra_info("peername")
            source = str(peer[0]) if peer else ""
            refusal = limits.admit(source)
            if refusal is not None:
                transport.write(refusal)
                transport.close()
                return
            self._source = source
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._waiting_for_head():
                return
            self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._source is None:  # refused in connection_made: nothing was set up
                return
            self._disarm()
            limits.release(self._source)
            self._source = None
            super().connection_lost(exc)

        def _waiting_for_head(self) -> bool:
            cycle = getattr(self, "cycle", None)
            return cycle is None or bool(cycle.response_complete)

        def _arm(self) -> None:
            self._disarm()
            loop = asyncio.get_running_loop()
            self._deadline = loop.call_later(limits.header_timeout, self._too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            if self._waiting_for_head() and not self.transport.is_closing():
                self.transport.close()

    Guarded.__name__ = f"Guarded{base.__name__}"
    return Guarded


def http_protocol() -> type[asyncio.Protocol]:
    """uvicorn's fastest HTTP protocol available here (httptools, else h11)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return H11Protocol
    return HttpToolsProtocol

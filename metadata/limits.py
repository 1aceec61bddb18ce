"""What one guest (or anything else on a host's networks) may hold of the metadata listener.

The listener faces every guest, so nothing a guest does may starve the API, the job worker
or the other guests of the process's sockets and file descriptors:
- a global cap on open connections and a cap per source address: past either, a new
  connection gets a short refusal (503 or 429) and is closed at once;
- a header deadline: a connection must send a complete request head within
  `header_timeout` seconds of connecting, and of its previous answer (which also ends idle
  keep-alive connections); a slow or silent client is disconnected.

metadata/server.py's protocol enforces them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple


class Refusal(NamedTuple):
    """What a connection past a cap is answered: its status (counted, metadata/stats.py)
    and the whole answer."""

    status: int
    answer: bytes


_BUSY = Refusal(
    503, b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
)
_TOO_MANY = Refusal(
    429,
    b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nConnection: close\r\n"
    b"Content-Length: 0\r\n\r\n",
)


@dataclass
class ConnectionLimits:
    max_connections: int = 512
    max_per_source: int = 16
    header_timeout: float = 5.0
    open: Counter[str] = field(default_factory=Counter)
    total: int = 0  # sum(open.values()), kept: a host's hundreds of guests, every connection
    refusing: int = 0  # refused connections waiting for their answer

    def admit(self, source: str) -> Refusal | None:
        """Counts the connection in; returns the refusal to send instead when over a cap.
        Every admitted connection must be released exactly once."""
        if self.total >= self.max_connections:
            return _BUSY
        if self.open[source] >= self.max_per_source:
            return _TOO_MANY
        self.open[source] += 1
        self.total += 1
        return None

    def release(self, source: str) -> None:
        self.total -= 1
        self.open[source] -= 1
        if self.open[source] <= 0:
            del self.open[source]

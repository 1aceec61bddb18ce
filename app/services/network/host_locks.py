"""A lock per host, made on first need: for host steps that read the database and then
write to the host, which must not interleave with another such step on the same host.
(This process's: `vdc serve` runs every host step in its job process; several servers
against one database would need the database's.)"""

from __future__ import annotations

import threading


class HostLocks:
    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def __call__(self, host_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(host_id, threading.Lock())

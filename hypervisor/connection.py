"""One libvirt connection per host URI, shared by every thread, reopened when it dies.

libvirt connections are thread-safe; opening one per call would cost a handshake each
time (and for `test://FILE` URIs would start a fresh, empty driver every time).
"""

from __future__ import annotations

import contextlib
import threading

import libvirt

from hypervisor.errors import HostUnreachable

# libvirt prints every error to stderr by default; vdc reports them itself.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


class ConnectionPool:
    def __init__(self) -> None:
        self._connections: dict[str, libvirt.virConnect] = {}
        self._facts: dict[str, set[object]] = {}
        self._lock = threading.Lock()

    def get(self, uri: str) -> libvirt.virConnect:
        """An open connection to `uri`; reconnects once if the old one died (libvirtd
        restarted). Raises HostUnreachable when the host cannot be reached."""
        with self._lock:
            connection = self._connections.get(uri)
            if connection is not None and _alive(connection):
                return connection
            if connection is not None:
                self._close_quietly(connection)
                del self._connections[uri]
            self._facts.pop(uri, None)  # a new connection (libvirtd restarted) knows nothing
            try:
                connection = libvirt.open(uri)
            except libvirt.libvirtError as error:
                raise HostUnreachable(
                    f"cannot connect to {uri}: {error.get_error_message()}"
                ) from error
            self._connections[uri] = connection
            return connection

    def facts(self, uri: str) -> set[object]:
        """What idempotent steps made sure of on the host over its current connection (a
        pool, a network), so the next launch need not ask libvirt again. Emptied when the
        connection is reopened, and when a step fails (forget_facts)."""
        with self._lock:
            return self._facts.setdefault(uri, set())

    def forget_facts(self) -> bool:
        """Every host's facts; False when none was remembered."""
        with self._lock:
            remembered = any(self._facts.values())
            self._facts = {}
        return remembered

    def forget(self, uri: str) -> None:
        with self._lock:
            self._facts.pop(uri, None)
            connection = self._connections.pop(uri, None)
        if connection is not None:
            self._close_quietly(connection)

    def close_all(self) -> None:
        with self._lock:
            connections, self._connections = list(self._connections.values()), {}
            self._facts = {}
        for connection in connections:
            self._close_quietly(connection)

    @staticmethod
    def _close_quietly(connection: libvirt.virConnect) -> None:
        with contextlib.suppress(libvirt.libvirtError):
            connection.close()


def _alive(connection: libvirt.virConnect) -> bool:
    try:
        return bool(connection.isAlive())
    except libvirt.libvirtError:
        return False


# The process-wide pool: connections are per URI, so tests using distinct `test://FILE`
# URIs never share state.
POOL = ConnectionPool()

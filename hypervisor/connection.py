"""One libvirt connection per host URI, shared by every thread, reopened when it dies.

libvirt connections are thread-safe; opening one per call would cost a handshake each
time (and for `test://FILE` URIs would start a fresh, empty driver every time).

A connection learns that its libvirtd went away (restarted, stopped) from libvirt's event
loop, which this module runs on a thread of its own: it watches each connection's socket,
so `isAlive()` turns false when the other end closes, and the next `get()` reconnects.
Without it a dead connection looks alive until a call on it fails: the first call after a
libvirtd restart failed in a process that had not made one since (the API's screen, while
only the job process's connection had been reopened).
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
            _EVENTS.start()
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


class _EventLoop:
    """libvirt's default event loop on a daemon thread, started before the first connection
    opens (libvirt watches only the connections opened after it was registered)."""

    def __init__(self) -> None:
        self._started = False

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        try:
            libvirt.virEventRegisterDefaultImpl()
        except libvirt.libvirtError:  # pragma: no cover - then a dead connection shows late
            return
        threading.Thread(target=self._run, name="libvirt-events", daemon=True).start()

    @staticmethod
    def _run() -> None:
        while True:
            libvirt.virEventRunDefaultImpl()  # waits with the GIL released


_EVENTS = _EventLoop()


def _alive(connection: libvirt.virConnect) -> bool:
    try:
        return bool(connection.isAlive())
    except libvirt.libvirtError:
        return False


# The process-wide pool: connections are per URI, so tests using distinct `test://FILE`
# URIs never share state.
POOL = ConnectionPool()

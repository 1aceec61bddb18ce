"""Wakes `vdc serve`'s job process when another process (the API, vdc-manage) commits a
job, so it starts at once rather than at its next poll (app/worker.py's POLL_SECONDS).

The doorbell is a unix datagram socket in the data dir's `run/` folder (0700, so only
vdc's user rings it); the job process binds it and waits on it. Ringing sends one byte:
how many jobs were queued (at most 255). A ring nobody hears (no job process, a full
socket buffer: it is busy anyway) is dropped; the poll finds the job a moment later, so
a ring is a hint and never the only way a job starts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import weakref
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

log = logging.getLogger("vdc.jobs")

# The doorbell each engine's commits ring (engine_for registers it; the job process's own
# engine rings none: its workers are woken in-process).
_BELLS: weakref.WeakKeyDictionary[sa.Engine, Path] = weakref.WeakKeyDictionary()
_SENDER = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
_SENDER.setblocking(False)


def register(engine: sa.Engine, path: Path | None) -> None:
    if path is None:
        _BELLS.pop(engine, None)
    else:
        _BELLS[engine] = path


def ring(engine: object, jobs: int) -> None:
    """After a commit that queued `jobs` jobs through `engine` (a session's bind)."""
    path = _BELLS.get(engine) if isinstance(engine, sa.Engine) else None
    if path is None:
        return
    # Nobody listens (FileNotFoundError, ConnectionRefusedError), the buffer is full
    # (BlockingIOError), a path too long for a socket: the poll finds the job instead.
    with contextlib.suppress(OSError):
        _SENDER.sendto(bytes([max(1, min(jobs, 255))]), os.fsencode(path))


class Listener:
    """The job process's end: calls `woken(jobs)` for every ring, on a thread of its own."""

    def __init__(self, path: Path, woken: Callable[[int], None]) -> None:
        self.path = path
        self._woken = woken
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.unlink(missing_ok=True)  # left by a job process that was killed
        self._socket.bind(os.fsencode(path))
        self._bound = path.stat().st_ino  # a later job process may bind the path anew
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="vdc-doorbell", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._closing.set()
        with contextlib.suppress(OSError):  # wakes the recv below (closing a socket does not)
            _SENDER.sendto(b"\0", os.fsencode(self.path))
        self._thread.join(2.0)
        with contextlib.suppress(OSError):
            # Only our own socket: a server started again after a kill -9 of the old one
            # has a new job process that bound this path while this one finished its jobs.
            if self.path.stat().st_ino == self._bound:
                self.path.unlink()
        self._socket.close()

    def _listen(self) -> None:
        while not self._closing.is_set():
            try:
                data = self._socket.recv(64)
            except OSError:
                return
            if sum(data):
                self._woken(sum(data))


def open_listener(path: Path, woken: Callable[[int], None]) -> Listener | None:
    """The listener, or None when the socket cannot be bound (a data dir path longer than
    a unix socket's 107 bytes): then the job process polls, as it always also does."""
    try:
        return Listener(path, woken)
    except OSError as error:
        log.warning("no job doorbell at %s (%s): jobs start at the next poll", path, error)
        return None

"""`vdc serve`'s metadata listener runs as a child process (metadata/server.py says why):
started before the API listens, restarted if it dies, stopped with the server."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
import time

from app.config import Settings, split_bind

log = logging.getLogger("vdc.serve")
READY_SECONDS = 30.0


class MetadataProcess:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="vdc-metadata", daemon=True)

    def start(self) -> None:
        """Starts the child and waits until it takes connections."""
        self._spawn()
        self._wait_ready()
        self._watcher.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()  # the child this server started, by its pid
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _spawn(self) -> None:
        # The same settings: the child reads the same VDC_* environment.
        self._process = subprocess.Popen([sys.executable, "-m", "metadata.server"])

    def _wait_ready(self) -> None:
        host, port = split_bind(self.settings.metadata_bind)
        address = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104 - a bind
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise SystemExit(f"the metadata listener exited ({self._process.returncode})")
            try:
                with socket.create_connection((address, port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise SystemExit(f"the metadata listener did not listen on {self.settings.metadata_bind}")

    def _watch(self) -> None:
        while not self._stopping.wait(1.0):
            process = self._process
            if process is not None and process.poll() is not None and not self._stopping.is_set():
                log.error(
                    "the metadata listener exited (%s); starting it again", process.returncode
                )
                self._spawn()

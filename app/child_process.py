"""A child process of `vdc serve` (the metadata listener, the job workers): started before
the API listens, started again if it dies, stopped with the server."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time

log = logging.getLogger("vdc.serve")
READY_SECONDS = 30.0


class ChildProcess:
    """`python -m MODULE`, with the same VDC_* environment (so the same settings)."""

    def __init__(self, module: str, what: str) -> None:
        self.module = module
        self.what = what  # for messages: "the metadata listener"
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name=f"vdc-{module}", daemon=True)

    def start(self) -> None:
        """Starts the child and waits until it is ready."""
        self._spawn()
        deadline = time.monotonic() + READY_SECONDS
        while not self.ready():
            assert self._process is not None
            if self._process.poll() is not None:
                raise SystemExit(f"{self.what} exited ({self._process.returncode})")
            if time.monotonic() > deadline:
                raise SystemExit(f"{self.what} was not ready in {READY_SECONDS:.0f}s")
            time.sleep(0.1)
        self._watcher.start()

    def ready(self) -> bool:
        raise NotImplementedError

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

    def before_spawn(self) -> None:
        """Clears what a previous child left (a readiness mark)."""

    def _spawn(self) -> None:
        self.before_spawn()
        self._process = subprocess.Popen([sys.executable, "-m", self.module])  # noqa: S603

    def _watch(self) -> None:
        while not self._stopping.wait(1.0):
            process = self._process
            if process is not None and process.poll() is not None and not self._stopping.is_set():
                log.error("%s exited (%s); starting it again", self.what, process.returncode)
                self._spawn()

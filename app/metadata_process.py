"""`vdc serve`'s metadata listener runs as a child process (metadata/server.py says why)."""

from __future__ import annotations

import socket

from app.child_process import ChildProcess
from app.config import Settings, split_bind


class MetadataProcess(ChildProcess):
    def __init__(self, settings: Settings) -> None:
        super().__init__("metadata.server", "the metadata listener")
        self.settings = settings

    def ready(self) -> bool:
        """It takes connections."""
        host, port = split_bind(self.settings.metadata_bind)
        address = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104 - a bind
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return True
        except OSError:
            return False

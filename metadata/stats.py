"""The metadata process's own counts of its answers, and how they reach `GET /metrics`.

The listener (metadata/server.py) answers tens of thousands of requests a second on one
event loop, so a request costs the counting two dict look-ups, an increment and a bucket
index: no lock (only the loop thread touches the counts), no I/O. Counted per kind of path
(app.metrics.metadata_path_kind: `meta-data`, `user-data`, `token`, ...) and status, and
timed per kind from the parsed request (httptools' on_message_complete) to its answer
handed to the transport: the service's own time, not the client's time to send its head.

Once a second, when something changed, `publish` writes the counts as a JSON snapshot,
atomically (a temporary file, then os.replace) and readable by vdc's user only, to
Settings.metadata_metrics_file; the API process reads it at each scrape (app.metrics
renders it). Both processes are children of one `vdc serve` on one machine, so a file in
the data dir is the whole transport: no database write per request, no socket to secure.

The counts start from zero with each metadata process (a counter reset, which Prometheus'
rate() and increase() expect), and the snapshot is written once before the listener takes
connections, so a scrape never shows the counts of a process that is gone.
"""

from __future__ import annotations

import json
import os
import time
from bisect import bisect_left
from pathlib import Path
from typing import Any

from app.metrics import METADATA_BUCKETS, metadata_path_kind, publish

MAX_PATHS = 4096  # paths whose kind is remembered; a guest asking random paths gets no more


class KindCounts:
    """One kind of path's answers: by status, by latency bucket (the last one past the
    largest bound: +Inf; not cumulative), and their seconds in all."""

    __slots__ = ("buckets", "seconds", "statuses")

    def __init__(self) -> None:
        self.statuses: dict[int, int] = {}
        self.buckets = [0] * (len(METADATA_BUCKETS) + 1)
        self.seconds = 0.0


class RequestStats:
    def __init__(self) -> None:
        self.kinds: dict[str, KindCounts] = {}
        self.changes = 0  # moves with every count: a publisher writes only when it moved
        self.started = time.time()
        self._paths: dict[str, KindCounts] = {}  # path -> its kind's counts

    def observe(self, path: str, status: int, seconds: float) -> None:
        """One answer to a request for `path`, `seconds` after the request was parsed."""
        counts = self._paths.get(path)
        if counts is None:
            counts = self._kind(metadata_path_kind(path))
            if len(self._paths) < MAX_PATHS:
                self._paths[path] = counts
        statuses = counts.statuses
        statuses[status] = statuses.get(status, 0) + 1
        counts.buckets[bisect_left(METADATA_BUCKETS, seconds)] += 1  # le: first bound >= it
        counts.seconds += seconds
        self.changes += 1

    def refused(self, status: int) -> None:
        """An answer to a request that never got a path (a malformed or oversized head, or
        a connection past the listener's caps, metadata/limits.py): counted as kind `other`,
        not timed."""
        statuses = self._kind("other").statuses
        statuses[status] = statuses.get(status, 0) + 1
        self.changes += 1

    def _kind(self, kind: str) -> KindCounts:
        counts = self.kinds.get(kind)
        if counts is None:
            counts = self.kinds[kind] = KindCounts()
        return counts

    def snapshot(self) -> dict[str, Any]:
        """The counts as JSON-ready data (app.metrics.metadata_families reads it)."""
        return {
            "pid": os.getpid(),
            "started": self.started,
            "buckets": list(METADATA_BUCKETS),
            "requests": [
                [kind, status, n]
                for kind, counts in self.kinds.items()
                for status, n in counts.statuses.items()
            ],
            "durations": {
                kind: {"counts": list(counts.buckets), "sum": counts.seconds}
                for kind, counts in self.kinds.items()
                if any(counts.buckets)
            },
        }


def write_snapshot(path: Path, data: dict[str, Any]) -> None:
    """Atomically: a reader sees the previous snapshot or this one, never half of one."""
    publish(path, json.dumps(data, separators=(",", ":")).encode())


class Publisher:
    """Writes `stats` to `path` when it changed since the last write."""

    def __init__(self, stats: RequestStats, path: Path) -> None:
        self.stats = stats
        self.path = path
        self.published = -1

    def due(self) -> dict[str, Any] | None:
        """The snapshot to write, taken on the loop thread; None when nothing changed."""
        if self.stats.changes == self.published:
            return None
        self.published = self.stats.changes
        return self.stats.snapshot()

    def publish(self) -> None:
        data = self.due()
        if data is not None:
            write_snapshot(self.path, data)

"""Prometheus metrics of this process, for `GET /metrics` (app/api/metrics.py).

Measured as things happen, in the API process of `vdc serve`:
- `vdc_http_requests_total` and `vdc_http_request_duration_seconds`: the API listener's
  requests (API, web UI, docs) by method and route template (`/api/v1/instances/{instance_id}`,
  never the raw path, so the series stay few), and status;
Measured by the job workers (in `vdc serve`'s job process, published as a text file
every second, job_metrics_text; in the API's process where the workers run there, as in
the tests):
- `vdc_instance_launch_duration_seconds`: a launch accepted (the row's created_at) to the
  instance running (its launched_at), observed by the job that gets it there.
Counted by the metadata process (metadata/stats.py) and read from the snapshot it
publishes every second, at each scrape (metadata_families):
- `vdc_metadata_requests_total` and `vdc_metadata_request_duration_seconds`: the metadata
  listener's answers, by kind of path (`meta-data`, `user-data`, `token`, ...) and status.
Read from the database at each scrape (app/services/gauges.py), so they are right even
after a restart: instances by state, hosts by status, jobs by kind and state.

This module imports nothing else of vdc: the metadata service (metadata/) uses its kinds of
path and buckets without depending on the control plane.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.utils import floatToGoString
from starlette.routing import Mount

# The text format generate_latest() writes (Prometheus' classic exposition format).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
disable_created_metrics()  # no `_created` series beside every counter and histogram
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)  # CPU seconds, memory, open files of this process

HTTP_REQUESTS = Counter(
    "vdc_http_requests",
    "Requests the API listener answered, by method, route template and status",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_SECONDS = Histogram(
    "vdc_http_request_duration_seconds",
    "Time to answer a request on the API listener, by method and route template",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
# The metadata process's latency buckets (upper bounds, seconds; +Inf follows).
METADATA_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
JOB_REGISTRY = CollectorRegistry()  # what the job workers measure
LAUNCH_SECONDS = Histogram(
    "vdc_instance_launch_duration_seconds",
    "From a launch accepted by the API to its instance running",
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800),
    registry=JOB_REGISTRY,
)
UNMATCHED = "unmatched"  # the route label of a request no route took (404s, refusals)
METADATA_KINDS = ("meta-data", "user-data", "dynamic", "token", "versions")


def launch_observed(seconds: float) -> None:
    LAUNCH_SECONDS.observe(max(seconds, 0.0))


def metadata_path_kind(path: str) -> str:
    """`/latest/meta-data/instance-id` -> `meta-data`; `/latest/api/token` -> `token`."""
    parts = [p for p in path.split("/") if p]
    if len(parts) < 2:
        return "versions"
    rest = "/".join(parts[1:])
    if rest == "api/token":
        return "token"
    return parts[1] if parts[1] in METADATA_KINDS else "other"


class _Timed:
    """ASGI middleware: times each HTTP request and hands (scope, status, seconds) to
    `observe` once the answer is sent (or the app failed: status 500)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.observe(scope, status, time.perf_counter() - started)

    def observe(self, scope: dict[str, Any], status: int, seconds: float) -> None:
        raise NotImplementedError


def route_template(scope: dict[str, Any]) -> str:
    """The template of the route that answered (`/api/v1/instances/{instance_id}`), from
    the route the router left in the scope; UNMATCHED when none did.

    The route's own path lacks the prefixes of the routers that include it (`/api/v1`):
    those are the request path's leading segments, literal text of a router that matched."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    if not template:
        return UNMATCHED
    if isinstance(route, Mount):  # static files: one series for the whole folder
        return template.rstrip("/") + "/{path}"
    wanted = [part for part in template.split("/") if part]
    given = [part for part in scope["path"].split("/") if part]
    prefix = len(given) - len(wanted)
    if prefix <= 0 or ":path}" in template:
        return template
    return "/" + "/".join(given[:prefix] + wanted)


class HttpMetrics(_Timed):
    """The API listener's requests by route template (route_template)."""

    def observe(self, scope: dict[str, Any], status: int, seconds: float) -> None:
        route = route_template(scope)
        method = scope["method"]
        HTTP_REQUESTS.labels(method, route, str(status)).inc()
        HTTP_SECONDS.labels(method, route).observe(seconds)


@dataclass(frozen=True)
class Reading:
    """A gauge read at scrape time: `values` maps label values (in `labels` order) to a number."""

    name: str
    help: str
    labels: tuple[str, ...]
    values: Mapping[tuple[str, ...], float]


def render(
    readings: Iterable[Reading],
    metadata_snapshot: Path | None = None,
    job_metrics: Path | None = None,
) -> bytes:
    """The text exposition: this process's metrics, the metadata process's (from the
    snapshot it publishes, metadata/stats.py), then the readings of this scrape; then the
    job workers', from the file the job process publishes (`job_metrics`) or, without one,
    this process's own workers."""
    extra = [*metadata_families(metadata_snapshot), *(_family(r) for r in readings)]
    jobs = job_metrics_text() if job_metrics is None else _read_job_metrics(job_metrics)
    return generate_latest(_Both(REGISTRY, extra)) + jobs


def job_metrics_text() -> bytes:
    """What the job process publishes: its registry in the text format, which the API's
    scrape appends to its own (the families differ, so the two texts make one exposition)."""
    return generate_latest(JOB_REGISTRY)


def publish(path: Path, data: bytes) -> None:
    """A child process's metrics file for the API's scrape (the metadata process's snapshot,
    the job process's text), replaced so that a reader sees the previous file or this one,
    never half of one; 0600, its folder 0700 if new."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(temporary, path)


def _read_job_metrics(path: Path) -> bytes:
    """The job process's text; nothing while it has not written one (starting) or when the
    file is not one it wrote, never an error."""
    try:
        text = path.read_bytes()
    except OSError:
        return b""
    return text if text.startswith(b"# HELP vdc_") and text.endswith(b"\n") else b""


def metadata_families(snapshot: Path | None) -> tuple[Metric, Metric]:
    """The metadata requests counter and latency histogram from the metadata process's
    snapshot. No snapshot, an unreadable or a malformed one: the families without series
    (the process has not started, or is starting again), never an error."""
    requests = CounterMetricFamily(
        "vdc_metadata_requests",
        "Requests the metadata listener answered, by kind of path and status",
        labels=["path", "status"],
    )
    durations = HistogramMetricFamily(
        "vdc_metadata_request_duration_seconds",
        "Time to answer a metadata request, by kind of path",
        labels=["path"],
    )
    try:
        counted, timed = _read_snapshot(snapshot) if snapshot is not None else ({}, {})
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        counted, timed = {}, {}
    for (kind, status), number in sorted(counted.items()):
        requests.add_metric([kind, status], number)
    bounds = [*(floatToGoString(b) for b in METADATA_BUCKETS), "+Inf"]
    for kind, (counts, seconds) in sorted(timed.items()):
        cumulative, total = [], 0
        for bound, number in zip(bounds, counts, strict=True):
            total += number
            cumulative.append((bound, float(total)))
        durations.add_metric([kind], cumulative, sum_value=seconds)
    return requests, durations


def _read_snapshot(
    path: Path,
) -> tuple[dict[tuple[str, str], float], dict[str, tuple[list[int], float]]]:
    """(kind, status) -> answers, and kind -> (answers per bucket, seconds); raises on
    anything that is not a snapshot metadata/stats.py wrote with these buckets."""
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}, {}
    if [float(b) for b in data["buckets"]] != list(METADATA_BUCKETS):
        raise ValueError("the metadata process counts in other buckets")
    counted: dict[tuple[str, str], float] = {}
    for kind, status, number in data["requests"]:
        counted[(_kind(kind), str(int(status)))] = _count(number)
    timed: dict[str, tuple[list[int], float]] = {}
    for kind, histogram in data["durations"].items():
        counts = [int(_count(n)) for n in histogram["counts"]]
        seconds = float(histogram["sum"])
        if len(counts) != len(METADATA_BUCKETS) + 1 or not math.isfinite(seconds):
            raise ValueError("a malformed histogram")
        timed[_kind(kind)] = (counts, seconds)
    return counted, timed


def _kind(kind: object) -> str:
    if kind not in (*METADATA_KINDS, "other"):
        raise ValueError(f"not a kind of metadata path: {kind!r}")
    return str(kind)


def _count(number: object) -> float:
    if not isinstance(number, int) or isinstance(number, bool) or number < 0:
        raise ValueError(f"not a count: {number!r}")
    return float(number)


def _family(reading: Reading) -> Metric:
    family = GaugeMetricFamily(reading.name, reading.help, labels=list(reading.labels))
    for values, number in sorted(reading.values.items()):
        family.add_metric(list(values), number)
    return family


class _Both:
    """What generate_latest() reads: the registry's metrics, then the scrape's readings."""

    def __init__(self, registry: CollectorRegistry, extra: list[Metric]) -> None:
        self.registry = registry
        self.extra = extra

    def collect(self) -> Iterator[Metric]:
        yield from self.registry.collect()
        yield from self.extra

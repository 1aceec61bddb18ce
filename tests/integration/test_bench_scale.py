"""bench/scale.py still runs: its --quick mode (1,000 instances, 10 launches on each side)
on SQLite and PostgreSQL. This checks that the benchmark works and prints its figures with
a verdict, not how fast vdc is (`make bench` measures)."""

from __future__ import annotations

import re

from tests.bench_runs import run_benchmark
from tests.conftest import POSTGRES_URL


def test_the_scale_benchmark_runs_and_prints_its_figures() -> None:
    out = run_benchmark("scale.py", "--quick")
    for kind in ["sqlite", "postgres"] if POSTGRES_URL else ["sqlite"]:
        figures = (
            rf"scale/{kind}: a launch into a network with 1000 leases: median [\d.]+ ms;"
            r" into an empty network \(baseline\): [\d.]+ ms",
            rf"scale/{kind}: a launch after 1000 terminated instances: median [\d.]+ ms;"
            r" after 1 \(baseline\): [\d.]+ ms",
            rf"scale/{kind}: full network / baseline = [\d.]+ \(aim <= 1.5\)  (PASS|MISS)$",
            rf"scale/{kind}: a launch into a network whose last address is taken, \d+ gaps in"
            r" its leases: median [\d.]+ ms; into an empty network \(baseline\): [\d.]+ ms",
            rf"scale/{kind}: wrapped network / baseline = [\d.]+ \(aim <= 1.5\)  (PASS|MISS)$",
            rf"scale/{kind}: history / baseline = [\d.]+ \(aim <= 1.5\)  (PASS|MISS)$",
        )
        for figure in figures:
            assert re.search(figure, out, re.MULTILINE), (figure, out)

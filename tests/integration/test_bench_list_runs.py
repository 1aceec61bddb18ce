"""bench/list.py still runs: its --quick mode (500 instances, 20 requests per case, one
round) on SQLite and PostgreSQL, against a real `vdc serve`. This checks that
the benchmark works and prints every figure with its verdict, not how fast vdc is: the
machine running the tests is too busy for that (`make bench` measures)."""

from __future__ import annotations

import re

from tests.bench_runs import free_ports, run_benchmark
from tests.conftest import POSTGRES_URL

CASES = (
    "API admin ?limit=100",
    "API admin ?limit=100&state=running",
    "API admin ?limit=100&sort=-created_at",
    "API user ?limit=100",
    "API user ?limit=100&state=running",
    "API user ?limit=100&sort=-created_at",
    "web /instances (admin)",
    "web /instances (user)",
    "vdc-manage instance list",
    "vdc-manage instance list --all",
)


def test_the_list_benchmark_runs_and_prints_its_figures() -> None:
    out = run_benchmark("list.py", "--quick", "--port", str(free_ports(3)), timeout=900)
    sections = out.split("\n== ")[1:]
    assert [s.split(":")[0] for s in sections] == ["SQLite", "PostgreSQL"], out
    for section in sections:
        if section.startswith("PostgreSQL: skipped"):
            assert not POSTGRES_URL, section
            continue
        assert "500 instances in 20 accounts" in section, section
        for case in CASES:
            named = re.compile(re.escape(case) + r"\s{2,}")  # the name, then the columns
            lines = [line for line in section.splitlines() if named.match(line)]
            assert len(lines) == 1, (case, section)
            assert lines[0].endswith(("PASS", "MISS")), lines[0]
            assert "ms" in lines[0] and "x " in lines[0], lines[0]
    assert "\nlist: " in out and " PASS, " in out and " MISS " in out, out

"""bench/list.py still runs: its --quick mode (500 instances, 20 requests per case, one
round) on SQLite and PostgreSQL, against a real `vdc serve`. This checks that
the benchmark works and prints every figure with its verdict, not how fast vdc is: the
machine running the tests is too busy for that (`make bench` measures)."""

from __future__ import annotations

import os
import random
import re
import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import POSTGRES_URL

ROOT = Path(__file__).resolve().parents[2]
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


def free_ports(count: int) -> int:
    """A first port with `count` free ones from it (vdc, its metadata listener, the
    baseline server)."""
    for _ in range(100):
        first = random.randint(20000, 60000)
        try:
            for port in range(first, first + count):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise RuntimeError("no free ports")


def test_the_list_benchmark_runs_and_prints_its_figures() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VDC_")}
    if POSTGRES_URL:
        env["VDC_TEST_POSTGRES_URL"] = POSTGRES_URL
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "list.py"), "--quick", "--port", str(free_ports(3))],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
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

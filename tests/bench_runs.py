"""Running a benchmark of bench/ from the tests that check it still works (its short
form): as `make bench` runs it, with none of this process's VDC_ settings but the test
PostgreSQL's address, and failing with its output when it fails."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import POSTGRES_URL

ROOT = Path(__file__).resolve().parents[1]


def free_ports(count: int) -> int:
    """A first port with `count` free ones from it (what a benchmark's --port takes)."""
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


def run_benchmark(script: str, *args: str, timeout: float = 600, keep: str = "") -> str:
    """bench/SCRIPT's standard output; `keep`: a VDC_ variable it gets from this process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VDC_") or k == keep}
    if POSTGRES_URL:
        env["VDC_TEST_POSTGRES_URL"] = POSTGRES_URL
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout

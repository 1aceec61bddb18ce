"""bench/boot.py still runs: one round (a guest launched through vdc and the same image
booted by hand, with a filter like vdc's and without one) prints its figures and verdict. This
checks that the benchmark works, not how fast vdc boots (`make bench` measures)."""

from __future__ import annotations

import re

import pytest

from tests.bench_runs import run_benchmark
from tests.e2e.conftest import _missing_requirements


def test_the_boot_benchmark_runs_one_round_and_prints_its_figures() -> None:
    missing = _missing_requirements()
    if missing:
        pytest.skip(missing)
    # The suite's guest image cache is shared; vdc's own settings are not.
    out = run_benchmark("boot.py", "--rounds", "1", timeout=900, keep="VDC_E2E_CACHE")
    assert re.search(r"^vdc API launch -> guest has IP: median [\d.]+s", out, re.MULTILINE), out
    assert re.search(
        r"^virsh create   -> guest has IP: median [\d.]+s .* with a filter like vdc's$", out, re.M
    ), out
    assert re.search(
        r"^virsh create, no filter       : median [\d.]+s .* the filter costs [-+][\d.]+s",
        out,
        re.M,
    ), out
    assert re.search(r"^vdc adds [-+][\d.]+% \(aim: under 10 %\)  (PASS|MISS)$", out, re.M), out

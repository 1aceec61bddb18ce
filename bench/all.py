"""`make bench`: every benchmark in turn, then every verdict they printed.

    .venv/bin/python bench/all.py [--only list,launch]

Each benchmark prints its figures next to a baseline measured in the same run and its
aims, each verdict line ending in PASS or MISS; this runs them one after the other (never
together: they would measure each other), shows their output as it comes, and ends with
the verdict lines of all of them. A MISS is a result, not a failure: the exit status is
1 only when a benchmark itself fails. boot.py needs root (a network namespace, real
guests); metadata.py installs nginx-light and wrk when they are missing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ("list", "launch", "scale", "metadata", "boot")
NEEDS_ROOT = {"boot"}


def run(name: str) -> tuple[int, list[str]]:
    """Runs bench/NAME.py, echoing its output; (exit status, its verdict lines)."""
    print(f"\n##### bench/{name}.py", flush=True)
    if name in NEEDS_ROOT and os.geteuid() != 0:
        line = f"bench/{name}.py: not run, it needs root"
        print(line, flush=True)
        return 0, [line]
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-u", str(HERE / f"{name}.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    verdicts = []
    for line in process.stdout:
        print(line, end="", flush=True)
        if line.rstrip().endswith(("PASS", "MISS")):
            verdicts.append(f"{name:8} {line.rstrip()}")
    status = process.wait()
    print(f"##### bench/{name}.py: {time.monotonic() - started:.0f}s, exit {status}", flush=True)
    if status != 0:
        verdicts.append(f"{name:8} FAILED (exit {status}): see its output above")
    elif not verdicts:
        verdicts.append(f"{name:8} printed no PASS/MISS line")
    return status, verdicts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated names")
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmarks {unknown}; choose from {', '.join(BENCHMARKS)}")
    failed = False
    summary: list[str] = []
    for name in names:
        status, verdicts = run(name)
        failed = failed or status != 0
        summary += verdicts
    print("\n##### verdicts (each figure against its aim)")
    print("\n".join(summary))
    passed = sum(line.endswith("PASS") for line in summary)
    missed = sum(line.endswith("MISS") for line in summary)
    print(f"{passed} PASS, {missed} MISS" + (", and a benchmark FAILED" if failed else ""))
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()

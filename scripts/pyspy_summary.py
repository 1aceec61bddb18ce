"""Summarizes py-spy's collapsed stacks (`py-spy record --format raw`): the functions where
the sampled threads spent their time, inclusive (the function and what it called) and self.

    python scripts/pyspy_summary.py PROFILE.txt [--top 30] [--match app/,hypervisor/]

A frame reads `function (path/to/file.py:line)`; lines of one function are added up.
`--match` keeps functions whose file contains one of the comma-separated parts.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")


def key(frame: str) -> str:
    found = FRAME.match(frame.strip())
    if found is None:
        return frame.strip()
    path = found["file"]
    for marker in ("site-packages/", "/work/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{found['function']} ({path})"


def summarize(text: str) -> tuple[int, Counter[str], Counter[str]]:
    total, inclusive, own = 0, Counter[str](), Counter[str]()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = [key(f) for f in stack.split(";") if f]
        for name in set(frames):
            inclusive[name] += samples
        if frames:
            own[frames[-1]] += samples
    return total, inclusive, own


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--match", default="", help="comma-separated parts of file paths")
    args = parser.parse_args()
    total, inclusive, own = summarize(args.profile.read_text())
    parts = [p for p in args.match.split(",") if p]

    def shown(name: str) -> bool:
        return not parts or any(p in name for p in parts)

    print(f"{total} samples")
    print(f"{'incl %':>7} {'self %':>7}  function")
    ranked = [(n, c) for n, c in inclusive.most_common() if shown(n)]
    for name, count in ranked[: args.top]:
        print(f"{100 * count / total:7.1f} {100 * own[name] / total:7.1f}  {name}")


if __name__ == "__main__":
    main()

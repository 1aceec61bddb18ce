"""Text edits of a guest's configuration files, as pure functions (no libguestfs here).

image_prepare.py reads a file out of the image, passes its text through one of these and
writes the result back only when it changed, so each function answers "what would the file
say after the tweak", and None or an unchanged text means there is nothing to do.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

_HWADDR = re.compile(r"^(\s*)(HWADDR=.*)$")
_EXIT_ZERO = re.compile(r"^\s*exit\s+0\s*(#.*)?$")
_USER_NAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
COMPRESSED_LOG = (".gz", ".xz", ".bz2", ".zst", ".lz4")
_ROTATED_LOG = re.compile(r"\.(\d+|old)$")


def comment_out_hwaddr(text: str) -> tuple[str, int]:
    """ifcfg files: `HWADDR=52:54:...` pins the interface to one MAC, which every instance
    changes; the line stays readable, commented out. Returns (text, lines changed)."""
    changed = 0
    lines = []
    for line in text.splitlines(keepends=True):
        match = _HWADDR.match(line.rstrip("\n"))
        if match:
            line = f"{match.group(1)}#{match.group(2)}" + ("\n" if line.endswith("\n") else "")
            changed += 1
        lines.append(line)
    return "".join(lines), changed


def _active_lines(text: str) -> list[str]:
    return [line.split("#", 1)[0].strip() for line in text.splitlines()]


def lists_module(text: str, module: str) -> bool:
    """/etc/modules or a modules-load.d file: one module per line, # comments."""
    return any(line.split()[:1] == [module] for line in _active_lines(text) if line)


def with_line(text: str, line: str) -> str | None:
    """text with `line` appended, or None when an active line already says the same."""
    if line.strip() in _active_lines(text):
        return None
    if text and not text.endswith("\n"):
        text += "\n"
    return text + line + "\n"


def is_builtin(modules_builtin: str, module: str) -> bool:
    """modules.builtin of a kernel lists built-in modules as paths (kernel/.../acpiphp.ko)."""
    return any(
        PurePosixPath(line.strip()).name in (f"{module}.ko", f"{module.replace('_', '-')}.ko")
        for line in modules_builtin.splitlines()
    )


def rc_local_running(text: str, command: str) -> str | None:
    """rc.local with `command` added before its final `exit 0` (where Debian's template
    ends), or at the end; None when the file already runs it."""
    if command in text:
        return None
    lines = text.splitlines()
    run = f"{command} || true  # vdc instance set-up (hostname, SSH keys, user-data)"
    for index in range(len(lines) - 1, -1, -1):
        if _EXIT_ZERO.match(lines[index]):
            lines.insert(index, run)
            return "\n".join(lines) + "\n"
        if lines[index].strip():
            break  # something else ends the script: run it after that
    return "\n".join([*lines, run]) + "\n"


def new_rc_local(command: str) -> str:
    return (
        rc_local_running("#!/bin/sh\n# Run once at the end of each boot.\n\nexit 0\n", command)
        or ""
    )


def log_disposal(path: str) -> str | None:
    """What the seed's clean-up does to a file under /var/log: "remove" rotated, compressed
    and journal files, "empty" the rest (keeping files that daemons expect to exist)."""
    name = PurePosixPath(path).name
    if name.endswith(COMPRESSED_LOG) or _ROTATED_LOG.search(name):
        return "remove"
    if "/journal/" in path and name.endswith((".journal", ".journal~")):
        return "remove"
    return "empty"


def passwd_users(text: str) -> set[str]:
    return {line.split(":", 1)[0] for line in text.splitlines() if ":" in line}


def valid_user_name(name: str) -> bool:
    return bool(_USER_NAME.match(name))

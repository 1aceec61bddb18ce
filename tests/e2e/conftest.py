"""E2E fixtures: one namespace, libvirtd and vdc server for the whole session, torn down
(every process by pid, the namespace, its files) even when tests fail."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import multihost
from tests.e2e.harness import E2E, new_world

# Kept between runs on a machine (the guest image, libvirt's capability cache); a fresh
# machine (CI) builds them once.
CACHE = Path(os.environ.get("VDC_E2E_CACHE", "/var/cache/vdc-e2e"))

_session: E2E | None = None


def _missing_requirements() -> str:
    if os.geteuid() != 0:
        return "e2e tests need root (network namespaces, libvirtd)"
    for tool in ("ip", "unshare", "libvirtd", "virtlogd", "virsh", "qemu-system-x86_64"):
        if shutil.which(tool) is None:
            return f"e2e tests need {tool} (make test installs it)"
    return ""


@pytest.fixture(scope="session")
def e2e() -> Iterator[E2E]:
    global _session
    missing = _missing_requirements()
    if missing:
        pytest.skip(missing)
    world = new_world(CACHE)
    _session = world
    try:
        world.start()
        yield world
    finally:
        world.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if multihost.TIMINGS:
        terminalreporter.section("e2e: two hosts")
        for what, seconds in multihost.TIMINGS:
            terminalreporter.write_line(f"  {what:45} {seconds:6.1f} s")
    if _session is None or not _session.timings:
        return
    terminalreporter.section("e2e: launch -> guest has its IP")
    for timing in _session.timings:
        terminalreporter.write_line(f"  {timing.instance_id}  {timing.launch_to_ip:6.1f} s")
    values = sorted(t.launch_to_ip for t in _session.timings)
    terminalreporter.write_line(
        f"  median {values[len(values) // 2]:.1f} s over {len(values)} guests"
    )

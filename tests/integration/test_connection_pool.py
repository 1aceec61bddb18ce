"""One libvirt connection per URI, reopened when it has died (libvirtd restarted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hypervisor.connection import ConnectionPool
from hypervisor.driver import HostDriver
from hypervisor.errors import HostUnreachable


def test_one_connection_per_uri_shared_and_reopened_when_dead(test_host_uri) -> None:  # type: ignore[no-untyped-def]
    pool = ConnectionPool()
    uri = test_host_uri()
    first = pool.get(uri)
    assert pool.get(uri) is first  # shared, not one handshake per call
    first.close()  # the daemon went away under our feet
    second = pool.get(uri)
    assert second is not first and second.isAlive()
    assert HostDriver(uri, pool).capacity().cpu_cores == 16
    pool.close_all()


def test_an_unreachable_host_is_a_clear_error(tmp_path: Path) -> None:
    pool = ConnectionPool()
    with pytest.raises(HostUnreachable, match="cannot connect to test://"):
        pool.get(f"test://{tmp_path}/missing.xml")

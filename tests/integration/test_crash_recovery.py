"""A server that dies with 20 launches in flight, on a test:// host: its worker stops dead
mid-job (no more progress, no more lease renewals, as after kill -9), a new server's
worker takes over once the leases run out, and every instance ends running, none built
twice, nothing leaked. Then the dead worker's threads wake up (a frozen process resumed)
and must not change anything either.

libvirt's test driver keeps its state in the process, so the dead server is simulated in
the same process; the real kill -9 with real guests is tests/e2e/test_crash_recovery_e2e.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session

from app.config import Settings
from app.services import doctor
from app.worker import Worker
from hypervisor.connection import POOL
from hypervisor.driver import HostDriver
from tests.conftest import Keys
from tests.integration.cloud import Cloud, build_cloud


class DeadWorker(Worker):
    """Claims jobs, then its threads stop dead in the middle of them; never renews."""

    def _spawn(self, target: object, name: str) -> None:
        if name == "vdc-lease":
            return  # a dead process renews nothing
        thread = threading.Thread(target=target, name=f"dead-{name}", daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)


@pytest.fixture
def cloud(client: TestClient, keys: Keys, test_host_uri, make_disk: Callable[..., Path]) -> Cloud:  # type: ignore[no-untyped-def]
    return build_cloud(client, keys, test_host_uri(cpus=256, memory_mib=256 * 1024), make_disk)


def test_twenty_launches_survive_the_death_of_their_server(
    cloud: Cloud, engine: sa.Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    cloud.client.app.state.worker.stop()  # type: ignore[attr-defined]
    wake = threading.Event()
    real_ensure_domain = HostDriver.ensure_domain
    stuck: list[str] = []  # the instances whose launch a dead thread stopped in
    resumed: list[str] = []  # ...and those whose stale step it finished once woken

    def ensure_domain(self: HostDriver, spec):  # type: ignore[no-untyped-def]
        if not threading.current_thread().name.startswith("dead-"):
            return real_ensure_domain(self, spec)
        stuck.append(spec.name)
        wake.wait(120)  # stopped dead here: network and disk made, no domain yet
        result = real_ensure_domain(self, spec)
        resumed.append(spec.name)
        return result

    monkeypatch.setattr(HostDriver, "ensure_domain", ensure_domain)
    dead = DeadWorker(settings.model_copy(update={"sync_interval": 3600}), engine)
    dead.start()
    launched = [cloud.launch() for _ in range(20)]
    ids = {instance["id"] for instance in launched}
    deadline = time.monotonic() + 20
    while _count(engine, "SELECT count(*) FROM jobs WHERE state = 'running'") < 4:
        assert time.monotonic() < deadline, "the doomed worker claimed nothing"
        time.sleep(0.05)
    dead._stop.set()  # it claims nothing more; its four threads stay stuck in their jobs

    restarted = Worker(settings, engine)
    restarted.start()
    try:
        for instance in launched:
            cloud.wait_for(instance["id"], "running", timeout=60)
        _everything_once(cloud, engine, settings, ids)

        wake.set()  # the dead worker's threads carry on with their stale jobs
        for thread in dead._threads:
            thread.join(timeout=120)
        # Only once they have really finished does "they changed nothing" mean anything.
        alive = [thread.name for thread in dead._threads if thread.is_alive()]
        assert alive == [], f"the dead worker's threads never finished: {alive}"
        assert stuck and sorted(resumed) == sorted(stuck), (stuck, resumed)
        _everything_once(cloud, engine, settings, ids)
        states = {cloud.show(i)["state"] for i in ids}
        assert states == {"running"}
    finally:
        wake.set()
        restarted.stop()
        dead.stop()


def _everything_once(cloud: Cloud, engine: sa.Engine, settings: Settings, ids: set[str]) -> None:
    domains = [d.name() for d in POOL.get(cloud.host_uri).listAllDomains(0)]
    assert sorted(d for d in domains if d.startswith("i-")) == sorted(ids)
    attempts = _count(engine, "SELECT max(attempts) FROM jobs WHERE kind = 'launch'")
    assert attempts == 2  # the stuck ones were resumed exactly once, none a third time
    assert _count(engine, "SELECT count(*) FROM jobs WHERE state != 'done'") == 0
    with Session(engine) as session:
        assert doctor.examine(session, settings) == []


def _count(engine: sa.Engine, sql: str) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.text(sql)).scalar() or 0)

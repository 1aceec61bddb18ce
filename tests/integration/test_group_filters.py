"""The `group_filters` job (app/services/network/host_filters.py) on SQLite and PostgreSQL:
one job rebuilds the filters of every live member of a group, on each member's host.
libvirt's test driver has no filter driver, so each host's driver here is the real one with
its filter calls recorded (real filters on real guests: tests/e2e/test_security_groups_e2e.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from app.config import Settings
from app.models import Job
from app.services.jobs_context import JobContext
from app.services.network import filter_jobs, host_filters
from hypervisor.driver import HostDriver
from hypervisor.errors import HostUnreachable
from hypervisor.specs import FilterRuleSpec, FilterSpec
from tests.conftest import Keys, bearer
from tests.integration.cloud import Cloud, build_cloud


@pytest.fixture
def cloud(client: TestClient, keys: Keys, test_host_uri, make_disk: Callable[..., Path]) -> Cloud:  # type: ignore[no-untyped-def]
    return build_cloud(client, keys, test_host_uri("host1"), make_disk)


class Recorded:
    """Host URI -> the filters defined there; a URI in `down` is unreachable."""

    def __init__(self) -> None:
        self.defined: dict[str, list[FilterSpec]] = {}
        self.down: set[str] = set()

    def driver(self, host: Any) -> HostDriver:
        recorded = self

        class Driver(HostDriver):
            def has_nwfilter(self) -> bool:
                return True

            def ensure_filter(self, spec: FilterSpec) -> bool:
                if host.uri in recorded.down:
                    raise HostUnreachable(f"{host.name} is down")
                recorded.defined.setdefault(host.uri, []).append(spec)
                return True

        return Driver(host.uri)


def group_job(group_id: str) -> Job:
    return Job(id="job-test0001", kind=filter_jobs.GROUP_FILTERS, security_group_id=group_id)


def test_one_job_rebuilds_every_live_member_on_its_host(
    cloud: Cloud,
    test_host_uri,
    settings: Settings,
    engine: sa.Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # type: ignore[no-untyped-def]
    second_uri = test_host_uri("host2")
    second = cloud.client.post(
        "/api/v1/host_nodes",
        json={"name": "host2", "uri": second_uri, "tunnel_ip": "192.0.2.2"},
        headers=bearer(cloud.admin),
    ).json()
    cloud.client.patch(
        f"/api/v1/host_nodes/{cloud.host_id}",
        json={"tunnel_ip": "192.0.2.1"},
        headers=bearer(cloud.admin),
    )
    on_first = [cloud.launch(host_node_id=cloud.host_id) for _ in range(2)]
    on_second = cloud.launch(host_node_id=second["id"])
    gone = cloud.launch(host_node_id=cloud.host_id)
    for instance in (*on_first, on_second, gone):
        cloud.wait_for(instance["id"], "running")
    # A terminate accepted, its job not run yet: the instance still has its interfaces.
    with engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE instances SET state = 'shuttingdown' WHERE id = :i"), {"i": gone["id"]}
        )
    group = on_second["security_group_ids"][0]  # the admin's default group, for all four

    recorded = Recorded()
    monkeypatch.setattr(host_filters, "driver_for", recorded.driver)
    host_filters.run_group_job(JobContext(settings=settings, engine=engine), group_job(group))

    everyone = {
        FilterRuleSpec("any", -1, -1, f"{i['ip_address']}/32") for i in (*on_first, on_second)
    }
    named = {uri: {s.name for s in specs} for uri, specs in recorded.defined.items()}
    assert named == {
        cloud.host_uri: {f"vdc-{i['interfaces'][0]['id']}" for i in on_first},
        second_uri: {f"vdc-{on_second['interfaces'][0]['id']}"},
    }  # the member on its way out gets no filter again
    for specs in recorded.defined.values():
        for spec in specs:
            assert set(spec.rules) == everyone

    # A host that cannot be reached does not hold up the others; the job fails (and is
    # retried) for it.
    recorded = Recorded()
    recorded.down.add(cloud.host_uri)
    monkeypatch.setattr(host_filters, "driver_for", recorded.driver)
    with pytest.raises(HostUnreachable):
        host_filters.run_group_job(JobContext(settings=settings, engine=engine), group_job(group))
    assert {s.name for s in recorded.defined[second_uri]} == named[second_uri]


def test_a_launch_queues_one_job_per_naming_group_not_one_per_member(
    cloud: Cloud, engine: sa.Engine
) -> None:
    launched = [cloud.launch() for _ in range(5)]
    for instance in launched:
        cloud.wait_for(instance["id"], "running")
    with engine.connect() as connection:
        kinds = dict(
            connection.execute(sa.text("SELECT kind, count(*) FROM jobs GROUP BY kind")).all()
        )
    assert kinds.get("filters", 0) == 0
    assert 1 <= kinds[filter_jobs.GROUP_FILTERS] <= 5  # one per launch at most, often fewer

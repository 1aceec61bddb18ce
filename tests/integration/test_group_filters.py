"""The `group_filters` job (app/services/network/host_filters.py) on SQLite and PostgreSQL:
one job brings every live member of a group up to date on each member's host: the member
sets its filters match, then the filters.
libvirt's test driver has no filter driver, so each host's driver here is the real one with
its filter calls recorded (real filters on real guests: tests/e2e/test_security_groups_e2e.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
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
from hypervisor.host_shell import HostShell
from hypervisor.member_sets import MemberSets, set_name
from hypervisor.specs import FilterRuleSpec, FilterSpec
from tests.conftest import Keys, bearer
from tests.integration.cloud import Cloud, build_cloud


@pytest.fixture
def cloud(client: TestClient, keys: Keys, test_host_uri, make_disk: Callable[..., Path]) -> Cloud:  # type: ignore[no-untyped-def]
    return build_cloud(client, keys, test_host_uri("host1"), make_disk)


class Recorded:
    """Host URI -> the filters defined there, and the member sets it holds (set name ->
    addresses); a URI in `down` is unreachable."""

    def __init__(self) -> None:
        self.defined: dict[str, list[FilterSpec]] = {}
        self.sets: dict[str, dict[str, list[str]]] = {}
        self.removed: dict[str, set[str]] = {}
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

    def member_sets(self, shell: HostShell) -> MemberSets:
        recorded = self

        class Sets(MemberSets):
            def ensure(self, sets: dict[str, Iterable[str]]) -> None:
                if shell.uri in recorded.down:
                    raise HostUnreachable("down")
                held = recorded.sets.setdefault(shell.uri, {})
                held.update({name: sorted(addresses) for name, addresses in sets.items()})

            def names(self) -> list[str]:
                return sorted(recorded.sets.get(shell.uri, {}))

            def remove(self, names: Iterable[str]) -> list[str]:
                for name in names:
                    recorded.sets[shell.uri].pop(name)
                    recorded.removed.setdefault(shell.uri, set()).add(name)
                return []

        return Sets(shell)

    def patch(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(host_filters, "driver_for", self.driver)
        monkeypatch.setattr(host_filters, "MemberSets", self.member_sets)


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
    recorded.patch(monkeypatch)
    recorded.sets[cloud.host_uri] = {"vdc-sg-gone0000": ["10.10.0.9"]}  # a group deleted
    host_filters.run_group_job(JobContext(settings=settings, engine=engine), group_job(group))

    named = {uri: {s.name for s in specs} for uri, specs in recorded.defined.items()}
    assert named == {
        cloud.host_uri: {f"vdc-{i['interfaces'][0]['id']}" for i in on_first},
        second_uri: {f"vdc-{on_second['interfaces'][0]['id']}"},
    }  # the member on its way out gets no filter again
    for specs in recorded.defined.values():
        for spec in specs:  # the members reach each other: the host's set of them
            assert spec.rules == (FilterRuleSpec("any", -1, -1, source_group=group),)
    everyone = sorted(i["ip_address"] for i in (*on_first, on_second))
    assert recorded.sets == {
        cloud.host_uri: {set_name(group): everyone},
        second_uri: {set_name(group): everyone},
    }  # and the set no filter matches any more is gone
    assert recorded.removed == {cloud.host_uri: {"vdc-sg-gone0000"}}

    # A member more: its address joins every host's set; the members' filters stay as
    # they were (libvirt re-applies only a filter that changed: before the sets, each
    # launch into a group rebuilt every member's filter).
    before = {uri: list(specs) for uri, specs in recorded.defined.items()}
    recorded.defined.clear()
    newcomer = cloud.launch(host_node_id=second["id"])
    cloud.wait_for(newcomer["id"], "running")
    host_filters.run_group_job(JobContext(settings=settings, engine=engine), group_job(group))
    assert recorded.defined[cloud.host_uri] == before[cloud.host_uri]
    everyone = sorted([*everyone, newcomer["ip_address"]])
    assert {uri: held[set_name(group)] for uri, held in recorded.sets.items()} == {
        cloud.host_uri: everyone,
        second_uri: everyone,
    }

    # A host that cannot be reached does not hold up the others; the job fails (and is
    # retried) for it.
    recorded = Recorded()
    recorded.down.add(cloud.host_uri)
    recorded.patch(monkeypatch)
    with pytest.raises(HostUnreachable):
        host_filters.run_group_job(JobContext(settings=settings, engine=engine), group_job(group))
    assert {s.name for s in recorded.defined[second_uri]} >= named[second_uri]
    assert recorded.sets[second_uri] == {set_name(group): everyone}


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

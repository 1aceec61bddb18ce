"""The metadata process's memory (metadata/state.py) against launched instances (test://
host), on both databases: what a refresh rebuilds, and what it leaves alone."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session

from metadata.state import MetadataState
from tests.conftest import Keys, bearer
from tests.integration.cloud import Cloud, build_cloud


@pytest.fixture
def cloud(client: TestClient, keys: Keys, test_host_uri, make_disk: Callable[..., Path]) -> Cloud:  # type: ignore[no-untyped-def]
    return build_cloud(client, keys, test_host_uri(), make_disk)


def counting_loads(state: MetadataState, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The instance ids the state rebuilds, in order."""
    loaded: list[str] = []
    original = state._load_many

    def load(session, instance_ids):  # type: ignore[no-untyped-def]
        loaded.extend(instance_ids)
        original(session, instance_ids)

    monkeypatch.setattr(state, "_load_many", load)
    return loaded


def require_tokens(cloud: Cloud, instance_id: str) -> None:
    """A change to the instance (its metadata then wants IMDSv2 tokens)."""
    changed = cloud.client.patch(
        f"/api/v1/instances/{instance_id}",
        json={"http_tokens": "required"},
        headers=bearer(cloud.admin),
    )
    assert changed.status_code == 200, changed.text


def test_a_change_is_rebuilt_once_and_the_next_change_shows(
    cloud: Cloud, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = cloud.wait_for(cloud.launch(hostname="first")["id"], "running")
    state = MetadataState(engine, "vdc-1")
    loaded = counting_loads(state, monkeypatch)
    state.refresh()  # the first look builds nothing: an instance is built when asked
    assert loaded == []
    assert state.lease(running["ip_address"]) is not None
    assert loaded == [running["id"]]
    hostname = "meta-data/hostname"  # below the version, as the service asks
    prebuilt = state.prebuilt(running["id"])
    assert prebuilt is not None and prebuilt.answer(hostname).body.startswith(b"first")

    # Looked at again within the overlap, unchanged: not rebuilt (it was eight times over
    # during launches, on the thread that shares the GIL with the answers).
    state.refresh()
    state.refresh()
    assert loaded == [running["id"]]
    # The full look (every FULL_EVERY) builds again what was built, and only that.
    state._last_full = 0.0
    state.refresh()
    assert loaded == [running["id"]] * 2

    require_tokens(cloud, running["id"])
    state.refresh()
    assert loaded == [running["id"]] * 3
    lease = state.lease(running["ip_address"])
    assert lease is not None and lease.http_tokens == "required"
    state.refresh()
    assert len(loaded) == 3


def test_a_terminated_instance_is_forgotten_and_its_address_no_longer_answers(
    cloud: Cloud, engine: sa.Engine
) -> None:
    running = cloud.wait_for(cloud.launch()["id"], "running")
    state = MetadataState(engine, "vdc-1")
    state.refresh()
    assert state.lease(running["ip_address"]) is not None
    assert state.prebuilt(running["id"]) is not None
    gone = cloud.client.delete(f"/api/v1/instances/{running['id']}", headers=bearer(cloud.admin))
    assert gone.status_code in (200, 202), gone.text
    cloud.wait_for(running["id"], "terminated")
    state.refresh()
    assert state.prebuilt(running["id"]) is None
    assert state.lease(running["ip_address"]) is None


def test_a_launch_is_built_when_it_runs_not_at_each_step_and_asked_early_it_answers(
    cloud: Cloud, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    cloud.client.app.state.worker.stop()  # type: ignore[attr-defined] # it stays pending
    pending = cloud.launch()
    state = MetadataState(engine, "vdc-1")
    state.refresh()
    assert state.lease(pending["ip_address"]) is not None  # built at its first question
    loaded = counting_loads(state, monkeypatch)
    require_tokens(cloud, pending["id"])
    state.refresh()
    assert loaded == []  # changed while pending: no guest can ask yet
    # A guest that asks before the refresh built it is answered from the database.
    state._forget(pending["id"])
    lease = state.lease(pending["ip_address"])
    assert lease is not None and lease.http_tokens == "required"


def test_the_changes_of_one_look_are_built_together_as_each_alone(
    cloud: Cloud, engine: sa.Engine
) -> None:
    """A burst of launches (here five, with a key, a volume, a second group or none) is
    built from one set of queries, not six per instance, into the answers each would get
    built alone."""
    admin = bearer(cloud.admin)
    key = cloud.client.post("/api/v1/ssh_key_pairs/generate", json={"name": "k"}, headers=admin)
    assert key.status_code in (200, 201), key.text
    group = cloud.client.post("/api/v1/security_groups", json={"name": "web"}, headers=admin)
    assert group.status_code == 201, group.text
    bodies = [
        {"hostname": "plain"},
        {"hostname": "keyed", "ssh_key_id": key.json()["id"], "user_data": "#!/bin/sh\necho"},
        {"hostname": "volumed", "volumes": [{"size_mib": 8}, {"size_mib": 16}]},
        {"hostname": "grouped", "security_group_ids": [group.json()["id"]]},
        {"hostname": "plain2"},
    ]
    state = MetadataState(engine, "vdc-1")
    state.refresh()  # the mark: what changes from here is looked at
    launched = [cloud.wait_for(cloud.launch(**body)["id"], "running") for body in bodies]
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        state.refresh()
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert {i["id"] for i in launched} <= set(state.instances)
    assert len(statements) <= 7, statements  # the look, then six for all five

    for instance in launched:
        alone = MetadataState(engine, "vdc-1")
        with Session(engine) as session:
            alone._load(session, instance["id"])
        together = state.prebuilt(instance["id"])
        assert together is not None
        assert together.answers == alone.instances[instance["id"]].answers
        assert state.lease(instance["ip_address"]) == alone.leases[instance["ip_address"]]
    volumed = state.prebuilt(launched[2]["id"])
    assert volumed is not None
    assert volumed.answer("meta-data/block-device-mapping/ebs2").body == b"vdc"
    keyed = state.prebuilt(launched[1]["id"])
    assert keyed is not None and keyed.answer("meta-data/public-keys/0/openssh-key").body
    grouped = state.prebuilt(launched[3]["id"])
    assert grouped is not None
    assert grouped.answer("meta-data/security-groups").body == b"web"
    plain = state.prebuilt(launched[0]["id"])
    assert plain is not None and plain.answer("meta-data/security-groups").body == b"default"

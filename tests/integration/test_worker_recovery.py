"""The job worker under stress and failure: concurrent launches, a worker that dies
mid-job, libvirt failing a step, and a host that goes away."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from app.config import Settings
from app.models.common import utcnow
from app.services import jobs
from hypervisor.connection import POOL
from hypervisor.driver import HostDriver
from hypervisor.errors import HypervisorError
from tests.conftest import Keys, bearer
from tests.integration.cloud import Cloud, build_cloud


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Fifty launches by one account: more than the default quota of instances."""
    return settings.model_copy(update={"quota_instances": -1})


@pytest.fixture
def cloud(client: TestClient, keys: Keys, test_host_uri, make_disk: Callable[..., Path]) -> Cloud:  # type: ignore[no-untyped-def]
    return build_cloud(client, keys, test_host_uri(cpus=256, memory_mib=256 * 1024), make_disk)


def test_fifty_concurrent_launches_get_distinct_addresses_and_all_run(cloud: Cloud) -> None:
    with ThreadPoolExecutor(max_workers=16) as pool:
        launched = list(pool.map(lambda _: cloud.launch(), range(50)))
    ips = [i["ip_address"] for i in launched]
    macs = [i["mac_address"] for i in launched]
    assert len(set(ips)) == 50 and len(set(macs)) == 50
    for instance in launched:
        cloud.wait_for(instance["id"], "running", timeout=60)
    domains = POOL.get(cloud.host_uri).listAllDomains(0)
    assert len([d for d in domains if d.name().startswith("i-")]) == 50


def test_a_job_whose_worker_died_is_finished_by_another(
    cloud: Cloud, engine: sa.Engine, settings: Settings
) -> None:
    # Stop this app's worker from racing us: claim the launch job as a worker that then
    # "dies" halfway (it created the network and the disk, never the domain).
    cloud.client.app.state.worker.stop()  # type: ignore[attr-defined]
    instance = cloud.launch()
    job = jobs.claim(engine, owner="dead-worker", lease_seconds=1)
    assert job is not None and job.instance_id == instance["id"]
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE instances SET state = 'starting' WHERE id = :id"),
            {"id": instance["id"]},
        )
    driver = HostDriver(cloud.host_uri)
    from app.services.compute.provision import load
    from app.services.jobs_context import JobContext
    from app.services.network.networks import spec_for
    from app.services.storage.pools import root_volume_name

    loaded = load(JobContext(settings, engine), instance["id"])
    assert loaded is not None
    driver.ensure_network(spec_for(loaded.interfaces[0][1]))
    from hypervisor.specs import PoolSpec, VolumeSpec

    driver.ensure_pool(PoolSpec("vdc-instances", str(settings.instance_dir)))
    driver.ensure_volume(
        "vdc-instances",
        VolumeSpec(root_volume_name(instance["id"]), 64 * 1024**2, "/x.qcow2", "qcow2"),
    )

    # A new worker (as after a restart) takes over once the dead one's lease runs out.
    from app.worker import Worker

    fresh = Worker(settings, engine)
    fresh.start()
    try:
        cloud.wait_for(instance["id"], "running", timeout=20)
    finally:
        fresh.stop()
    names = [d.name() for d in POOL.get(cloud.host_uri).listAllDomains(0)]
    assert names.count(instance["id"]) == 1
    with engine.connect() as conn:
        states = conn.execute(
            sa.text("SELECT state, attempts FROM jobs WHERE id = :id"), {"id": job.id}
        ).one()
    assert tuple(states) == ("done", 2)


def test_a_failing_libvirt_step_ends_in_error_with_the_reason(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_args: object, **_kwargs: object) -> str:
        raise HypervisorError("cannot create volume: No space left on device")

    monkeypatch.setattr(HostDriver, "ensure_volume", refuse)
    instance = cloud.launch()
    failed = cloud.wait_for(instance["id"], "error")
    assert failed["state_reason"] == "launch failed: cannot create volume: No space left on device"
    # An instance in error can still be terminated, which frees its address.
    monkeypatch.undo()
    cloud.client.delete(f"/api/v1/instances/{instance['id']}", headers=bearer(cloud.admin))
    assert cloud.wait_for(instance["id"], "terminated")["ip_address"] is None


def test_jobs_of_one_instance_run_in_order_one_at_a_time(cloud: Cloud, engine: sa.Engine) -> None:
    cloud.client.app.state.worker.stop()  # type: ignore[attr-defined]
    instance = cloud.launch()
    with engine.begin() as conn:  # a later job queued behind the launch
        conn.execute(
            sa.text(
                "INSERT INTO jobs (id, kind, instance_id, state, attempts, run_after,"
                " last_error, created_at, updated_at)"
                " VALUES ('job-later000', 'terminate', :i, 'queued', 0, :t, '', :t2, :t2)"
            ),
            {"i": instance["id"], "t": utcnow(), "t2": utcnow() + timedelta(seconds=1)},
        )
    first = jobs.claim(engine, "w1", 30)
    assert first is not None and first.kind == "launch"
    assert jobs.claim(engine, "w2", 30) is None  # the terminate waits for the launch
    jobs.finish(engine, first.id, "w1")
    second = jobs.claim(engine, "w2", 30)
    assert second is not None and second.id == "job-later000"


def test_unreachable_host_goes_offline_and_gets_no_instances(
    cloud: Cloud, settings: Settings
) -> None:
    # The host's "libvirtd" disappears: its node file is gone and the connection dropped.
    Path(cloud.host_uri.removeprefix("test://")).unlink()
    POOL.forget(cloud.host_uri)
    import time

    deadline = time.monotonic() + 60  # generous: the condition is waited for, not the clock
    while time.monotonic() < deadline:
        host = cloud.client.get(
            f"/api/v1/host_nodes/{cloud.host_id}", headers=bearer(cloud.admin)
        ).json()
        if host["status"] == "offline":
            break
        time.sleep(0.1)
    assert host["status"] == "offline" and host["status_reason"]
    refused = cloud.client.post(
        "/api/v1/instances",
        json={"image_id": cloud.image_id, "instance_type": "nano"},
        headers=bearer(cloud.admin),
    )
    assert refused.status_code == 409


def test_a_network_and_pool_removed_behind_vdcs_back_are_made_again_by_the_next_launch(
    cloud: Cloud,
) -> None:
    """The worker remembers the pools and networks it made sure of on a host, so a launch
    does not ask libvirt for them each time. When one is gone (an operator removed it,
    libvirtd forgot it), the step that needs it fails, and the job runs once more with
    every host checked again: the next launch still runs."""
    first = cloud.wait_for(cloud.launch()["id"], "running")
    connection = POOL.get(cloud.host_uri)
    network = connection.networkLookupByName(f"vdc-{cloud.network_id}")
    network.destroy()
    network.undefine()
    pool = connection.storagePoolLookupByName("vdc-instances")
    pool.destroy()
    pool.undefine()

    second = cloud.wait_for(cloud.launch()["id"], "running")
    assert second["id"] != first["id"] and second["state_reason"] == ""
    assert connection.networkLookupByName(f"vdc-{cloud.network_id}").isActive()
    assert connection.storagePoolLookupByName("vdc-instances").isActive()
    assert connection.lookupByName(second["id"]).isActive()

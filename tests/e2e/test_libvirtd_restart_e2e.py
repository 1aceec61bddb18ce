"""libvirtd stops while vdc runs: the host shows offline and takes no launch, a job that
needed libvirt meanwhile is retried rather than lost, and once libvirtd is back vdc
reconnects by itself and the guest that ran all along is still fine."""

from __future__ import annotations

import time
from typing import Any

from tests.e2e.harness import E2E


def wait_host(e2e: E2E, status: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        host: dict[str, Any] = e2e.get("/api/v1/host_nodes")["items"][0]
        if host["status"] == status:
            return host
        assert time.monotonic() < deadline, host
        time.sleep(0.3)


def wait_failed_attempt(e2e: E2E, instance_id: str, timeout: float = 120) -> tuple[Any, ...]:
    """The instance's reboot job once an attempt has failed (its error recorded), as
    (state, attempts, last_error)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = e2e.query(
            "SELECT state, attempts, last_error FROM jobs"
            " WHERE kind = 'reboot' AND instance_id = ?",
            instance_id,
        )
        if rows and rows[0][2]:
            return rows[0]
        assert time.monotonic() < deadline, f"no failed attempt of the reboot yet: {rows}"
        time.sleep(0.3)


def test_libvirtd_restart_while_vdc_runs(e2e: E2E) -> None:
    assert e2e.api is not None
    instance = e2e.launch(hostname="e2e-lv-restart")
    e2e.wait_state(instance["id"], "running")
    e2e.wait_network(instance)

    e2e.ns.stop_libvirtd()
    # A reboot asked for now needs libvirt: its job fails, and is retried, not lost.
    e2e.action(instance["id"], "reboot")
    offline = wait_host(e2e, "offline")
    assert offline["status_reason"]
    refused = e2e.api.post(
        "/api/v1/instances", json={"image_id": e2e.image_id, "instance_type": "nano"}
    )
    assert refused.status_code == 409 and "no host is available" in refused.text
    failed = wait_failed_attempt(e2e, instance["id"])  # retried later, not lost
    assert failed[0] in ("queued", "running"), failed
    assert e2e.get(f"/api/v1/instances/{instance['id']}")["state"] == "rebooting"

    e2e.ns.restart_libvirtd()
    wait_host(e2e, "online")
    e2e.wait_state(instance["id"], "running", timeout=90)
    job = e2e.query(
        "SELECT state, attempts, last_error FROM jobs WHERE kind = 'reboot' AND instance_id = ?",
        instance["id"],
    )[0]
    assert job[0] == "done" and job[1] >= 2, job
    e2e.wait_console(instance["id"], "VDC-E2E boot", count=2)  # it really rebooted
    assert e2e.virsh("domstate", instance["id"]).strip() == "running"
    rc, output = e2e.run_in_guest(instance["id"], instance["ip_address"], "echo still-here")
    assert rc == 0 and "still-here" in output

    again = e2e.launch(hostname="e2e-lv-after")  # new work goes through as before
    e2e.wait_state(again["id"], "running")
    e2e.wait_network(again)
    for instance_id in (instance["id"], again["id"]):
        e2e.terminate(instance_id)
    for instance_id in (instance["id"], again["id"]):
        e2e.wait_state(instance_id, "terminated")


def test_a_connection_from_before_a_restart_works_at_its_first_call(e2e: E2E) -> None:
    """A process that kept a connection across a libvirtd restart without using it (the
    API, whose screen proxy reads the host: only the job process reconnected) reconnects
    at its next call rather than failing it: libvirt's event loop saw the socket close."""
    from hypervisor.connection import POOL

    before = POOL.get(e2e.ns.uri)
    assert isinstance(before.listAllDomains(), list)  # a call: the connection is in use
    e2e.ns.stop_libvirtd()
    e2e.ns.restart_libvirtd()
    after = POOL.get(e2e.ns.uri)
    assert after is not before
    assert isinstance(after.listAllDomains(), list)  # the first call after the restart
    wait_host(e2e, "online")

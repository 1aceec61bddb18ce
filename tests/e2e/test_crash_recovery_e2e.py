"""kill -9 of `vdc serve` while real guests are being launched, then a restart: every
instance ends running, none is launched twice, and nothing is left without its row."""

from __future__ import annotations

import time

from tests.e2e.harness import E2E


def test_kill_9_during_launches_then_restart(e2e: E2E) -> None:
    launched = [e2e.launch(hostname=f"e2e-crash-{n}") for n in range(3)]
    ids = [instance["id"] for instance in launched]
    # Kill it with launches in flight: at least one claimed (starting), not all done.
    deadline = time.monotonic() + 60
    while True:
        states = [e2e.get(f"/api/v1/instances/{i}")["state"] for i in ids]
        if "starting" in states:
            break
        assert time.monotonic() < deadline, states
        time.sleep(0.05)
    e2e.kill_server()
    before = dict(e2e.query("SELECT id, state FROM instances"))
    assert set(before.values()) & {"pending", "starting"}, before

    e2e.start_server()
    for instance in launched:
        e2e.wait_state(instance["id"], "running", timeout=180)
    for instance in launched:
        e2e.wait_network(instance)

    # One domain each, and each launch job finished (once resumed at most).
    domains = e2e.virsh("list", "--all", "--name").split()
    assert sorted(d for d in domains if d in ids) == sorted(ids)
    jobs = [  # this test's: the world may have launched others before
        job
        for job in e2e.query("SELECT instance_id, state, attempts FROM jobs WHERE kind = 'launch'")
        if job[0] in ids
    ]
    assert sorted(j[0] for j in jobs) == sorted(ids)
    assert {j[1] for j in jobs} == {"done"}
    assert all(1 <= j[2] <= 2 for j in jobs), jobs
    rc, findings = e2e.doctor()
    assert (rc, findings) == (0, [])

    for instance_id in ids:
        e2e.terminate(instance_id)
    for instance_id in ids:
        e2e.wait_state(instance_id, "terminated")
    rc, findings = e2e.doctor()
    assert (rc, findings) == (0, [])

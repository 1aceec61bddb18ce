"""Volumes hot-attached to real running guests (ACPI PCI hotplug on the `pc` machine), seen
by the guest's own agent, which reports every virtio disk on its console as
`VDC-E2E disks vda:<512-byte sectors>:<serial> ...` whenever the set changes."""

from __future__ import annotations

import re
import time
from typing import Any

from tests.e2e.harness import E2E

SIZE_MIB = 64
SECTORS = SIZE_MIB * 1024 * 1024 // 512
# The block device whose serial is the volume id, whatever the guest named it.
FIND_DEVICE = """
dev=
for d in /sys/block/vd*; do
  [ "$(cat $d/serial 2>/dev/null)" = "{volume}" ] && dev=/dev/${{d##*/}}
done
[ -n "$dev" ] || {{ echo "no disk with serial {volume}"; exit 1; }}
"""


def wait_volume(e2e: E2E, volume_id: str, state: str, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        current: dict[str, Any] = e2e.get(f"/api/v1/volumes/{volume_id}")
        if current["state"] == state:
            return current
        if current["state"] == "error" or time.monotonic() > deadline:
            raise AssertionError(
                f"{volume_id} is {current['state']} ({current['state_reason']}), wanted {state}"
            )
        time.sleep(0.3)


def guest_disks(e2e: E2E, instance_id: str) -> dict[str, tuple[str, int]]:
    """serial -> (device, sectors), from the guest's latest disks report."""
    lines = re.findall(r"VDC-E2E disks(.*)", e2e.console(instance_id).replace("\r", ""))
    if not lines:
        return {}
    seen = {}
    for entry in lines[-1].split():
        device, sectors, serial = entry.split(":")
        seen[serial] = (device, int(sectors))
    return seen


def wait_guest_disks(
    e2e: E2E, instance_id: str, check: Any, timeout: float = 60
) -> dict[str, tuple[str, int]]:
    deadline = time.monotonic() + timeout
    while not check(seen := guest_disks(e2e, instance_id)):
        if time.monotonic() > deadline:
            raise AssertionError(f"{instance_id}: the guest reports disks {seen}")
        time.sleep(0.5)
    return seen


def test_a_volume_moves_between_running_guests_with_its_data(e2e: E2E) -> None:
    first = e2e.launch(hostname="e2e-vol-a")
    second = e2e.launch(hostname="e2e-vol-b")
    for instance in (first, second):
        e2e.wait_state(instance["id"], "running")
        e2e.wait_network(instance)

    volume = e2e.post("/api/v1/volumes", size_mib=SIZE_MIB, instance_id=first["id"])
    wait_volume(e2e, volume["id"], "available")
    vid = volume["id"]

    # Hot-attach to the running first guest: a new virtio disk of that size, serial = id.
    e2e.post(f"/api/v1/volumes/{vid}/attach", instance_id=first["id"])
    wait_volume(e2e, vid, "attached")
    seen = wait_guest_disks(e2e, first["id"], lambda disks: vid in disks)
    assert seen[vid][1] == SECTORS
    assert e2e.virsh("domstate", first["id"]).strip() == "running"  # no restart involved

    marker = f"vdc-marker-{vid}"
    write = FIND_DEVICE.format(volume=vid) + f'printf "{marker}\\n" > "$dev" && sync && echo OK'
    rc, output = e2e.run_in_guest(first["id"], first["ip_address"], write)
    assert rc == 0 and "OK" in output, output

    # Detach: the guest lets go of the disk (ACPI eject), and it is gone from its view.
    e2e.post(f"/api/v1/volumes/{vid}/detach")
    wait_volume(e2e, vid, "available")
    wait_guest_disks(e2e, first["id"], lambda disks: vid not in disks and "-" in disks)
    assert vid not in e2e.virsh("dumpxml", first["id"])
    assert vid not in e2e.virsh("dumpxml", "--inactive", first["id"])

    # Attach to the second guest: the marker written by the first is there.
    e2e.post(f"/api/v1/volumes/{vid}/attach", instance_id=second["id"])
    wait_volume(e2e, vid, "attached")
    wait_guest_disks(e2e, second["id"], lambda disks: vid in disks)
    read = FIND_DEVICE.format(volume=vid) + 'echo "READ $(head -c 64 "$dev" | head -n 1)"'
    rc, output = e2e.run_in_guest(second["id"], second["ip_address"], read)
    assert rc == 0, output
    assert f"READ {marker}" in output

    # Stop and start: the volume is still attached when the guest boots again.
    e2e.action(second["id"], "stop")
    e2e.wait_state(second["id"], "stopped", timeout=90)
    e2e.action(second["id"], "start")
    e2e.wait_state(second["id"], "running")
    after_boot = wait_guest_disks(e2e, second["id"], lambda disks: vid in disks, timeout=120)
    assert after_boot[vid][1] == SECTORS
    assert e2e.get(f"/api/v1/volumes/{vid}")["state"] == "attached"
    rc, output = e2e.run_in_guest(second["id"], second["ip_address"], read)
    assert f"READ {marker}" in output, output

    # Terminating keeps the volume (it did not ask to be deleted); then it is deleted.
    for instance in (first, second):
        e2e.terminate(instance["id"])
    for instance in (first, second):
        e2e.wait_state(instance["id"], "terminated")
    kept = e2e.get(f"/api/v1/volumes/{vid}")
    assert (kept["state"], kept["instance_id"]) == ("available", None)
    volume_file = e2e.data_dir / "volumes" / f"{vid}.qcow2"
    assert volume_file.exists()
    assert e2e.api is not None
    assert e2e.api.delete(f"/api/v1/volumes/{vid}").status_code == 202
    wait_volume(e2e, vid, "deleted")
    assert not volume_file.exists()

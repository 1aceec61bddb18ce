"""Real guests booted by vdc (qemu emulation, inside the test's network namespace), driven
through vdc's HTTP API only; the guests' own view comes from their serial console."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.e2e.harness import E2E


def test_launch_gives_the_guest_the_address_mac_and_hostname_the_api_reported(e2e: E2E) -> None:
    instance = e2e.launch(hostname="e2e-one", display_name="first guest")
    running = e2e.wait_state(instance["id"], "running")
    net = e2e.wait_network(instance)
    ip, mac, hostname, gateway = net.groups()
    assert ip == running["ip_address"] == instance["ip_address"]
    assert mac == running["mac_address"] == instance["mac_address"]
    assert hostname == "e2e-one"
    assert gateway == "10.111.0.1"
    e2e.terminate(instance["id"])
    e2e.wait_state(instance["id"], "terminated")


def test_stop_start_and_reboot_keep_the_address(e2e: E2E) -> None:
    instance = e2e.launch(hostname="e2e-power")
    e2e.wait_state(instance["id"], "running")
    first = e2e.wait_network(instance).groups()

    assert e2e.action(instance["id"], "stop")["state"] == "stopping"
    stopped = e2e.wait_state(instance["id"], "stopped", timeout=90)
    assert "forced" not in stopped["state_reason"], "the guest ignored the ACPI shutdown"
    assert e2e.virsh("domstate", instance["id"]).strip() == "shut off"

    e2e.action(instance["id"], "start")
    e2e.wait_state(instance["id"], "running")
    assert e2e.wait_network(instance).groups() == first  # the log starts afresh at power-on

    e2e.action(instance["id"], "reboot")
    e2e.wait_state(instance["id"], "running")
    e2e.wait_console(instance["id"], "VDC-E2E boot", count=2)  # same qemu: log goes on
    assert e2e.wait_console(instance["id"], r"VDC-E2E net .*", count=2)[-1].group(0).split()[
        2:4
    ] == [
        f"ip={first[0]}",
        f"mac={first[1]}",
    ]
    e2e.terminate(instance["id"])
    e2e.wait_state(instance["id"], "terminated")


def test_three_guests_at_once_get_distinct_addresses_and_reach_each_other(e2e: E2E) -> None:
    with ThreadPoolExecutor(3) as pool:
        launched = list(pool.map(lambda n: e2e.launch(hostname=f"e2e-trio-{n}"), range(3)))
    addresses = {i["ip_address"] for i in launched}
    assert len(addresses) == 3
    for instance in launched:
        e2e.wait_state(instance["id"], "running")
    seen = {e2e.wait_network(instance).group(1) for instance in launched}
    assert seen == addresses
    for instance in launched:
        others = sorted(addresses - {instance["ip_address"]})
        script = " && ".join(f"ping -c 2 -W 3 {peer}" for peer in others)
        rc, output = e2e.run_in_guest(instance["id"], instance["ip_address"], script, timeout=90)
        assert rc == 0, output
    for instance in launched:
        e2e.terminate(instance["id"])
    for instance in launched:
        e2e.wait_state(instance["id"], "terminated")


def test_terminate_removes_domain_disk_dhcp_entry_and_lease(e2e: E2E) -> None:
    instance = e2e.launch(hostname="e2e-bye")
    e2e.wait_state(instance["id"], "running")
    e2e.wait_network(instance)
    network = f"vdc-{e2e.network_id}"
    assert instance["mac_address"] in e2e.virsh("net-dumpxml", network)
    assert instance["mac_address"] in e2e.virsh("net-dhcp-leases", network)
    disk = e2e.data_dir / "instances" / f"{instance['id']}-root.qcow2"
    assert disk.exists()

    e2e.terminate(instance["id"])
    e2e.wait_state(instance["id"], "terminated")
    assert instance["id"] not in e2e.virsh("list", "--all", "--name").split()
    assert not disk.exists()
    assert instance["mac_address"] not in e2e.virsh("net-dumpxml", network)
    assert e2e.query(
        "SELECT count(*) FROM network_interfaces WHERE instance_id = ?", instance["id"]
    ) == [(0,)]
    # dnsmasq forgets the lease once the entry is gone and the guest is off.
    leases = e2e.virsh("net-dhcp-leases", network)
    assert instance["mac_address"] not in leases, leases
    assert not Path(e2e.data_dir / "consoles" / f"{instance['id']}.log").exists()


def test_a_guest_that_powers_itself_off_is_seen_stopped(e2e: E2E) -> None:
    instance = e2e.launch(hostname="e2e-off")
    e2e.wait_state(instance["id"], "running")
    e2e.wait_network(instance)
    (e2e.run_dir / "cmds" / instance["ip_address"]).write_text("ID off\npoweroff -f\n")
    stopped = e2e.wait_state(instance["id"], "stopped", timeout=60)
    assert "powered itself off" in stopped["state_reason"]
    e2e.terminate(instance["id"])
    e2e.wait_state(instance["id"], "terminated")

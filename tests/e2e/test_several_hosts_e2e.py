"""Several hosts, one data center, with real guests (tests/e2e/multihost.py builds the two
hosts): node1 is the network node (vdc serve, libvirtd, dnsmasq, the metadata DNAT), node2
a compute host that vdc reaches only as it would a real one, libvirt over ssh
(qemu+libssh2) and ssh for the bridge and VXLAN steps, and that cannot see vdc's data dir.
Everything below goes through vdc's API.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import CACHE
from tests.e2e.harness import E2E, make_env
from tests.e2e.multihost import NODE1_IP, NODE2_IP, TIMINGS, TwoHosts
from tests.e2e.test_security_groups_e2e import echoes_received, metadata_packets
from tests.e2e.test_volumes_e2e import SECTORS, SIZE_MIB, wait_guest_disks, wait_volume

USER_DATA = "user-data for {name}"
READ_OWN = r"""
echo "OWN id=$(wget -q -O - http://169.254.169.254/latest/meta-data/instance-id)"
echo "OWN user-data=$(wget -q -O - http://169.254.169.254/latest/user-data)"
"""
# The metadata drive of a guest on node2: built by vdc on node1, uploaded through libvirt.
READ_DRIVE = r"""
mkdir -p /mnt/md && mount -t vfat -o ro "$(findfs LABEL=METADATA)" /mnt/md || exit 4
echo "DRIVE id=$(cat /mnt/md/meta-data/instance-id)"
umount /mnt/md
"""


class FirstHost:
    """What the E2E harness needs of its "namespace": here the two hosts, seen from node1,
    where vdc serve and the test's command server run."""

    def __init__(self, hosts: TwoHosts) -> None:
        self.hosts = hosts

    @property
    def uri(self) -> str:
        return self.hosts.node1.uri

    def netns_exec(self, *args: str) -> list[str]:
        return self.hosts.node1.netns_exec(*args)

    def start(self) -> None:
        self.hosts.start()

    def stop(self) -> None:
        self.hosts.stop()


@pytest.fixture(scope="module")
def dc() -> Iterator[E2E]:
    if os.geteuid() != 0 or shutil.which("sshd", path="/usr/sbin") is None:
        reason = "several hosts need root and openssh-server (make test installs it)"
        print(f"skipped: {reason}")
        pytest.skip(reason)
    from tests.e2e.guest.build import build_image

    image = build_image(CACHE / "guest")
    run_dir = Path(tempfile.mkdtemp(prefix="vdc-e2e-dc-"))
    run_dir.chmod(0o711)
    data_dir = run_dir / "data"
    hosts = TwoHosts(run_dir / "hosts", CACHE / "libvirt", hidden=(data_dir,))
    ssh = hosts.ssh_dir
    env = make_env(run_dir) | {
        # node2's host key is the run's own; ssh reads no config of this machine.
        "VDC_SSH_OPTIONS": f"-F /dev/null -o UserKnownHostsFile={ssh / 'known_hosts'} "
        "-o StrictHostKeyChecking=yes",
    }
    world = E2E(ns=FirstHost(hosts), run_dir=run_dir, data_dir=data_dir, env=env, image_path=image)  # type: ignore[arg-type]
    try:
        world.start()
        world.manage("host", "update", "node1", "--tunnel-ip", NODE1_IP)
        node2_uri = (
            f"qemu+libssh2://root@{NODE2_IP}/system?keyfile={hosts.key}"
            f"&known_hosts={ssh / 'known_hosts'}&sshauth=privkey"
        )
        world.manage("host", "add", "node2", "--uri", node2_uri)
        yield world
    finally:
        world.stop()


def virsh_on(dc: E2E, node: str, *args: str) -> str:
    hosts: TwoHosts = dc.ns.hosts  # type: ignore[attr-defined]
    return (hosts.node1 if node == "node1" else hosts.node2).virsh(*args).stdout


def run_on(dc: E2E, node: str, *args: str) -> str:
    """A command on a host: node1 locally (in its namespace), node2 over ssh."""
    hosts: TwoHosts = dc.ns.hosts  # type: ignore[attr-defined]
    if node == "node1":
        return hosts.node1_exec(*args).stdout
    return hosts.node2_ssh(*args).stdout


def host_id(dc: E2E, name: str) -> str:
    found = [h for h in dc.get("/api/v1/host_nodes")["items"] if h["name"] == name]
    return str(found[0]["id"])


def launch_on(dc: E2E, name: str, host: str, **body: Any) -> dict[str, Any]:
    return dc.launch(
        hostname=name,
        host_node_id=host_id(dc, host),
        user_data=USER_DATA.format(name=name),
        **body,
    )


def test_guests_on_two_hosts_are_one_network(dc: E2E) -> None:
    assert dc.api is not None
    hosts = {h["name"]: h for h in dc.get("/api/v1/host_nodes")["items"]}
    assert hosts["node2"]["tunnel_ip"] == NODE2_IP and hosts["node2"]["status"] == "online"
    assert hosts["node2"]["virt_type"] in ("kvm", "qemu"), hosts["node2"]
    assert hosts["node2"]["virt_type_reason"]

    # --- (1) A on node1, B on node2: what the API says, each sees; they reach each other --
    a = launch_on(dc, "dc-a", "node1")
    b = launch_on(dc, "dc-b", "node2")
    # (2): same image, same host, at once; with a metadata drive, which node2 gets as well
    second_on_node2 = launch_on(dc, "dc-c", "node2", metadata_drive=True)
    guests = {"a": a, "b": b, "c": second_on_node2}
    for name, guest in guests.items():
        shown = dc.wait_state(guest["id"], "running")
        assert shown["host_node_id"] == host_id(dc, "node1" if name == "a" else "node2")
        net = dc.wait_network(guest)
        where = "node1" if name == "a" else "node2"
        TIMINGS.append(
            (f"{shown['hostname']} on {where}: launch -> has IP", dc.timings[-1].launch_to_ip)
        )
        assert (net.group(1), net.group(2)) == (shown["ip_address"], shown["mac_address"])
        guest.update(shown)
    for one, other in ((a, b), (b, a)):
        script = f"ping -c 3 -W 3 {other['ip_address']} >/dev/null && echo PINGED"
        rc, output = dc.run_in_guest(one["id"], one["ip_address"], script, timeout=90)
        assert rc == 0 and "PINGED" in output, (one["hostname"], output)
    for guest in (a, b):
        rc, output = dc.run_in_guest(guest["id"], guest["ip_address"], READ_OWN, timeout=90)
        assert rc == 0, output
        seen = dict(re.findall(r"OWN ([^=]+)=(.*)", output))
        assert seen == {"id": guest["id"], "user-data": USER_DATA.format(name=guest["hostname"])}
    c = second_on_node2
    rc, output = dc.run_in_guest(c["id"], c["ip_address"], READ_DRIVE, timeout=90)
    assert rc == 0 and f"DRIVE id={c['id']}" in output, output

    # With guests on both hosts, the doctor finds every bridge, port and entry as it should be,
    # and notices one that went missing behind vdc's back.
    assert dc.doctor() == (0, [])
    port = "vx" + dc.get(f"/api/v1/networks/{dc.network_id}")["bridge"].removeprefix("vdc")
    flood = ("00:00:00:00:00:00", "dev", port, "dst", NODE1_IP)
    run_on(dc, "node2", "bridge", "fdb", "del", *flood)
    assert dc.doctor() == (
        1,
        [
            {
                "where": "node2",
                "kind": "flood entry",
                "name": f"{port}/{NODE1_IP}",
                "problem": "missing",
            }
        ],
    )
    run_on(dc, "node2", "bridge", "fdb", "append", *flood)
    # A security group's member set no guest's filter there matches: an orphan.
    run_on(dc, "node2", "ipset", "create", "vdc-sg-stray000", "hash:ip")
    assert dc.doctor() == (
        1,
        [{"where": "node2", "kind": "member set", "name": "vdc-sg-stray000", "problem": "orphan"}],
    )
    run_on(dc, "node2", "ipset", "destroy", "vdc-sg-stray000")

    # --- (2) the image went to node2 once; an image nobody launched went nowhere -----------
    image = dc.get(f"/api/v1/images/{dc.image_id}")
    copies = [(c["host_node_id"], c["state"]) for c in image["copies"]]
    assert copies == [(host_id(dc, "node2"), "available")]
    # The whole log: dc.log() keeps its last 4000 characters, where the access log of the
    # console polls above may have pushed this line out.
    served = (dc.run_dir / "vdc-serve.log").read_text(errors="replace")
    assert served.count(f"image {dc.image_id} uploaded to host node2") == 1
    idle = dc.manage(
        "image", "add", "local", str(dc.data_dir / "import" / "vdc-e2e-guest.qcow2"),
        "--arch", "x86_64", "--description", "never launched",
    )  # fmt: skip
    assert dc.get(f"/api/v1/images/{idle}")["copies"] == []
    pool = virsh_on(dc, "node2", "vol-list", "vdc-images")
    assert idle not in pool and dc.image_id in pool

    # --- (3) B sends from A's address: A hears nothing, the metadata service sees nothing -
    echoes, metadata = echoes_received(dc, a), metadata_packets(dc)
    spoof = f"""
ip addr add {a["ip_address"]}/32 dev eth0
ping -c 3 -W 2 -I {a["ip_address"]} {a["ip_address"]} >/dev/null 2>&1
ping -c 3 -W 2 -I {a["ip_address"]} 10.111.0.1 >/dev/null 2>&1
ip addr del {a["ip_address"]}/32 dev eth0
echo SPOOF-DONE
"""
    rc, output = dc.run_in_guest(b["id"], b["ip_address"], spoof, timeout=90)
    assert rc == 0 and "SPOOF-DONE" in output, output
    assert echoes_received(dc, a) == echoes, "A received pings sent from a forged address"
    assert metadata_packets(dc) == metadata

    # --- (4) a volume hot-attached to B on node2; B's console through the API -------------
    volume = dc.post("/api/v1/volumes", size_mib=SIZE_MIB, instance_id=b["id"])
    wait_volume(dc, volume["id"], "available")
    dc.post(f"/api/v1/volumes/{volume['id']}/attach", instance_id=b["id"])
    wait_volume(dc, volume["id"], "attached")
    disks = wait_guest_disks(dc, b["id"], lambda seen: volume["id"] in seen)
    assert disks[volume["id"]][1] == SECTORS
    console = dc.console(b["id"])
    assert f"hostname={b['hostname']}" in console and "VDC-E2E disks" in console

    # --- (4b) C, stopped on node2, captured as an image: the flat copy made on node2, its
    # bytes brought over libvirt's download stream, the copy gone from node2 ------------
    c = second_on_node2["id"]
    dc.action(c, "stop")
    dc.wait_state(c, "stopped")
    captured = dc.post(f"/api/v1/instances/{c}/image", display_name="from node2")
    deadline = time.monotonic() + 180
    while (made := dc.get(f"/api/v1/images/{captured['id']}"))["state"] == "creating":
        assert time.monotonic() < deadline, made
        time.sleep(0.3)
    assert (made["state"], made["format"], made["state_reason"]) == ("available", "qcow2", "")
    assert made["virtual_size"] == image["virtual_size"]  # the disk of the guest image
    stored = dc.data_dir / "images" / f"{made['id']}.qcow2"
    info = subprocess.run(["qemu-img", "info", str(stored)], capture_output=True, text=True)
    assert "backing file" not in info.stdout and "file format: qcow2" in info.stdout
    assert "-capture" not in virsh_on(dc, "node2", "vol-list", "vdc-instances")

    # --- (5) everything goes: nothing is left on either host ------------------------------
    for guest in guests.values():
        dc.terminate(guest["id"])
    for guest in guests.values():
        dc.wait_state(guest["id"], "terminated")
    assert dc.api.delete(f"/api/v1/volumes/{volume['id']}").status_code == 202
    wait_volume(dc, volume["id"], "deleted")
    network = dc.get(f"/api/v1/networks/{dc.network_id}")
    for node in ("node1", "node2"):
        assert virsh_on(dc, node, "list", "--all", "--name").strip() == ""
        left = virsh_on(dc, node, "vol-list", "vdc-instances")
        assert left.count(".qcow2") == 0 and "-metadata.img" not in left
    links = run_on(dc, "node2", "ip", "-br", "link")
    assert network["bridge"] not in links and "vx" not in links
    assert "vx" not in run_on(dc, "node1", "ip", "-br", "link")
    code, findings = dc.doctor()
    assert (code, findings) == (0, [])

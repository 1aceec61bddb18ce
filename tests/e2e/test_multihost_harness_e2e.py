"""The two-host world (tests/e2e/multihost.py) does what the "several hosts" design needs:
node1 is the network node (libvirt NAT network: bridge, dnsmasq, gateway), node2 a compute
host reached only by libvirt over qemu+ssh and by ssh. A guest booted on node2, on a plain
bridge joined to node1's by VXLAN, gets its lease from node1's dnsmasq and reaches node1's
gateway; its disk reached node2 through libvirt's upload stream, its console comes back
through libvirt's download stream, and clean-traffic guards it on node2."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from tests.e2e import multihost
from tests.e2e.multihost import TwoHosts, dir_pool, download, overlay_volume, upload

ROOT = Path(__file__).resolve().parents[2]
# Apart from the single-host e2e cache, so concurrent runs of both never share files.
CACHE = Path(os.environ.get("VDC_E2E_MH_CACHE", "/var/cache/vdc-e2e-mh"))
TOOLS = ("ip", "bridge", "unshare", "nsenter", "libvirtd", "virtlogd", "virsh")
TOOLS += ("qemu-system-x86_64", "ssh", "ssh-keygen", "busybox")

NETWORK, NODE1_BRIDGE, NODE2_BRIDGE, VNI = "mh-net", "mhbr0", "mhbr0", 112
GATEWAY, GUEST_IP, SPOOFED_IP = "10.112.0.1", "10.112.0.50", "10.112.0.51"
GUEST_MAC = "52:54:00:11:20:50"
NET_LINE = re.compile(r"VDC-E2E net ip=(\S+) mac=(\S+) hostname=\S+ gateway=(\S+)")

NETWORK_XML = f"""<network><name>{NETWORK}</name><forward mode='nat'/>
<bridge name='{NODE1_BRIDGE}' stp='off' delay='0'/><mtu size='1450'/>
<ip address='{GATEWAY}' netmask='255.255.255.0'><dhcp>
<range start='10.112.0.100' end='10.112.0.200'/><host mac='{GUEST_MAC}' ip='{GUEST_IP}'/>
</dhcp></ip></network>"""

# <mtu> on the interface: virtio-net tells the guest 1450 (VIRTIO_NET_F_MTU), whatever its
# DHCP client does with option 26 (libvirt's dnsmasq sends it; busybox's script ignores it).
GUEST_XML = f"""<domain type='qemu'><name>mh-guest</name><memory unit='MiB'>128</memory>
<vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os><features><acpi/></features>
<devices>
<disk type='volume' device='disk'><driver name='qemu' type='qcow2'/>
<source pool='vdc-images' volume='mh-guest-root.qcow2'/><target dev='vda' bus='virtio'/></disk>
<interface type='bridge'><source bridge='{NODE2_BRIDGE}'/><mac address='{GUEST_MAC}'/>
<model type='virtio'/><mtu size='1450'/>
<filterref filter='clean-traffic'><parameter name='IP' value='{GUEST_IP}'/></filterref>
</interface>
<serial type='pty'><log file='/var/lib/libvirt/vdc-console/mh-guest.log' append='off'/>
<target port='0'/></serial><console type='pty'><target type='serial' port='0'/></console>
</devices></domain>"""


def _missing_requirements() -> str:
    if os.geteuid() != 0:
        return "multi-host e2e needs root (network namespaces, libvirtd, sshd)"
    for tool in TOOLS:
        if shutil.which(tool) is None:
            return f"multi-host e2e needs {tool} (make test installs it)"
    if not Path("/usr/sbin/sshd").exists():
        return "multi-host e2e needs /usr/sbin/sshd: openssh-server (make test installs it)"
    return ""


class World:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.data_dir = run_dir / "data"  # where vdc's VDC_DATA_DIR will be
        self.data_dir.mkdir()
        self.hosts = TwoHosts(run_dir / "hosts", CACHE / "libvirt", hidden=(self.data_dir,))
        self.commands = run_dir / "cmds"
        self._command_server: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.hosts.start()
        self.commands.mkdir()
        self._command_server = subprocess.Popen(
            self.hosts.node1.netns_exec(
                sys.executable,
                str(ROOT / "tests/e2e/command_server.py"),
                "--dir",
                str(self.commands),
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self._command_server is not None and self._command_server.poll() is None:
            self._command_server.terminate()
            self._command_server.wait(timeout=20)
        self.hosts.stop()
        shutil.rmtree(self.run_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    missing = _missing_requirements()
    if missing:
        pytest.skip(missing)
    run_dir = Path(tempfile.mkdtemp(prefix="vdc-e2e-mh-"))
    run_dir.chmod(0o711)  # not pytest's 0700 temp root: libvirt-qemu reads disks below
    world = World(run_dir)
    try:
        starting = time.monotonic()
        world.start()
        multihost.TIMINGS.append(
            ("two hosts up (netns, libvirtd x2, sshd)", time.monotonic() - starting)
        )
        yield world
    finally:
        world.stop()


def wait_console(pool: libvirt.virStoragePool, pattern: str, timeout: float) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while True:
        text = download(pool, "mh-guest.log").decode(errors="replace").replace("\r", "")
        match = re.search(pattern, text, re.S)
        if match:
            return match
        if time.monotonic() > deadline:
            raise AssertionError(f"{pattern!r} not on the console in {timeout:.0f}s:\n{text}")
        time.sleep(0.5)


def run_in_guest(world: World, pool: libvirt.virStoragePool, script: str) -> tuple[int, str]:
    """The guest fetches the command from node1's gateway (across VXLAN) and prints the
    output on its serial console (read back from node2 through libvirt)."""
    command_id = f"c{time.monotonic_ns()}"
    (world.commands / GUEST_IP).write_text(f"ID {command_id}\n{script}\n")
    match = wait_console(
        pool, rf"cmd-begin {command_id}\n(.*?)VDC-E2E cmd-end {command_id} rc=(\d+)", 90
    )
    (world.commands / GUEST_IP).unlink()
    return int(match.group(2)), match.group(1)


def test_a_guest_on_node2_gets_its_lease_from_node1_across_vxlan_and_reaches_the_gateway(
    world: World,
) -> None:
    from tests.e2e.guest.build import build_image

    hosts = world.hosts
    image = build_image(CACHE / "guest")

    # node2 is another machine: vdc's data folder is empty there, its libvirt has no socket
    # on the machine's file system, and a process in node1's namespace (where vdc runs)
    # opens it with libvirt-python, no terminal, no prompt.
    (world.data_dir / "only-on-node1").touch()
    hidden = hosts.node2_ssh("test", "-e", str(world.data_dir / "only-on-node1"), check=False)
    assert hidden.returncode == 1
    assert not list(hosts.node2.socket.parent.iterdir())
    probe = "import libvirt, sys; c = libvirt.open(sys.argv[1]); print(c.getURI()); c.close()"
    opened = subprocess.run(
        hosts.node1.netns_exec(sys.executable, "-c", probe, hosts.node2_uri()),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout.strip() == hosts.node2_uri()

    node1 = libvirt.open(hosts.node1.uri)
    node2 = libvirt.open(hosts.node2_uri(from_root_netns=True))
    try:
        network = node1.networkDefineXML(NETWORK_XML)
        network.create()
        hosts.overlay(NODE1_BRIDGE, NODE2_BRIDGE, VNI)

        images = dir_pool(node2, "vdc-images", "/var/lib/libvirt/vdc-images")
        consoles = dir_pool(node2, "vdc-console", "/var/lib/libvirt/vdc-console")
        uploading = time.monotonic()
        base = upload(images, "vdc-e2e-guest.qcow2", image)
        multihost.TIMINGS.append(
            ("upload of the guest image to node2", time.monotonic() - uploading)
        )
        copied = hosts.node2_ssh("sha256sum", base.path()).stdout.split()[0]
        assert copied == hashlib.sha256(image.read_bytes()).hexdigest()
        overlay_volume(images, "mh-guest-root.qcow2", base)

        domain = node2.defineXML(GUEST_XML)
        started = time.monotonic()
        domain.create()
        net = wait_console(consoles, NET_LINE.pattern, 120)
        multihost.TIMINGS.append(("node2 guest: start -> DHCP lease", time.monotonic() - started))
        assert net.groups() == (GUEST_IP, GUEST_MAC, GATEWAY)

        # The lease is node1's dnsmasq's, and the guest's frames came in by the VXLAN port.
        leases = {lease["mac"]: lease["ipaddr"] for lease in network.DHCPLeases()}
        assert leases.get(GUEST_MAC) == GUEST_IP
        fdb = hosts.node1_exec("bridge", "fdb", "show", "br", NODE1_BRIDGE).stdout
        assert re.search(rf"^{GUEST_MAC} dev vx{VNI} master {NODE1_BRIDGE}", fdb, re.M), fdb

        code, output = run_in_guest(
            world,
            consoles,
            f"cat /sys/class/net/eth0/mtu; ping -c 2 -W 5 {GATEWAY} && ping -c 1 -W 5 -s 1422"
            f" {GATEWAY}; echo full-size=$?; ip addr add {SPOOFED_IP}/24 dev eth0;"
            f" ping -c 2 -W 2 -I {SPOOFED_IP} {GATEWAY}; echo spoofed=$?",
        )
        assert code == 0, output
        assert output.splitlines()[0] == "1450", output
        assert "2 packets transmitted, 2 packets received" in output, output
        assert "full-size=0" in output, output  # a 1450-byte packet crosses whole
        assert "spoofed=1" in output, output  # clean-traffic on node2's plain bridge
        domain.destroy()
    finally:
        node2.close()
        node1.close()

"""Two libvirt hosts on one machine, for the "several hosts" e2e tests (ARCHITECTURE.md).

    node1 (network node)                         node2 (compute host, looks remote)
    netns + libvirtd, socket in the run folder   netns + libvirtd at /run/libvirt in its own
                                                 mount namespace, sshd, vdc's data dir hidden
        ul0 192.168.250.1/24 ---- veth underlay ---- ul0 192.168.250.2/24

Each node is a LibvirtNamespace (libvirt_ns.py). The veth pair is created with its ends
directly inside the two namespaces: nothing ever exists in the machine's root network
namespace. node2 is reached only the way vdc reaches a real compute host: libvirt over
`qemu+ssh://`, and `ip`/`bridge` commands over ssh, both from node1's network namespace.
sshd runs in node2's network and mount namespaces, so virt-ssh-helper (which ssh runs
there) finds node2's libvirtd at its default socket path. Keys, host key and known_hosts
are generated per run in the run folder; the machine's /root/.ssh and /etc/ssh are not
used (ssh gets `-F /dev/null` and its own known_hosts through a `command=` wrapper).
"""

from __future__ import annotations

import shlex
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import libvirt

from tests.e2e.libvirt_ns import LibvirtNamespace, run

NODE1_IP = "192.168.250.1"
NODE2_IP = "192.168.250.2"
UNDERLAY = "ul0"  # the veth end's name in both namespaces
TIMINGS: list[tuple[str, float]] = []  # (what, seconds): the e2e summary prints them

SSHD_CONFIG = """\
ListenAddress {address}
HostKey {host_key}
AuthorizedKeysFile /run/vdc-ssh/authorized_keys
PidFile none
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PrintMotd no
"""

# libvirt 9.0's ssh transport runs `<command> -l root -i KEYFILE -T -e none [-o BatchMode=yes
# for no_tty=1] [-o StrictHostKeyChecking=no for no_verify=1] -- HOST "sh -c '...
# virt-ssh-helper qemu:///system ...'"` and ignores `known_hosts=` (only the libssh and
# libssh2 transports read it). This wrapper, the URI's `command=`, adds what it lacks: no
# config from the machine (-F also keeps ssh from creating /root/.ssh), the run's own
# known_hosts, strict host key checking, never a prompt.
SSH_WRAPPER = """\
#!/bin/sh
exec {prefix}ssh -F /dev/null -o UserKnownHostsFile={known_hosts} \\
  -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=10 "$@"
"""


class TwoHosts:
    """node1 and node2. `hidden` (vdc's VDC_DATA_DIR) is an empty folder on node2, so nothing
    can work by a path both hosts see."""

    def __init__(self, run_dir: Path, cache_dir: Path, hidden: tuple[Path, ...] = ()) -> None:
        tag = uuid.uuid4().hex[:6]
        self.run_dir = run_dir
        self.node1 = LibvirtNamespace(run_dir / "node1", cache_dir, name=f"vdc-mh-{tag}-n1")
        self.node2 = LibvirtNamespace(
            run_dir / "node2",
            cache_dir,
            name=f"vdc-mh-{tag}-n2",
            own_socket=False,
            hide=(Path("/run"), *hidden),  # a /run of its own, as on another machine
        )
        self.ssh_dir = run_dir / "ssh"
        self.key = self.ssh_dir / "id_ed25519"
        self._sshd: subprocess.Popen[bytes] | None = None

    # --- how to reach node2 ----------------------------------------------------------------

    def node2_uri(self, from_root_netns: bool = False) -> str:
        """node2's libvirt for a process in node1's network namespace (vdc's place); with
        `from_root_netns`, for one anywhere on the machine (its ssh enters node1's first)."""
        wrapper = self.ssh_dir / ("ssh-via-node1" if from_root_netns else "ssh")
        return f"qemu+ssh://root@{NODE2_IP}/system?keyfile={self.key}&command={wrapper}&no_tty=1"

    def node2_ssh(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Runs one command on node2 over ssh (as vdc would for bridge and VXLAN steps). ssh
        hands the remote shell one string: the argument list is quoted for it here."""
        ssh = str(self.ssh_dir / "ssh-via-node1")
        result = subprocess.run(
            [ssh, "-i", str(self.key), f"root@{NODE2_IP}", shlex.join(args)],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"node2: {shlex.join(args)}: {result.stderr.strip()}")
        return result

    def node1_exec(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Runs one command on node1 (vdc's own host: locally, in its namespace)."""
        return run(*self.node1.netns_exec(*args), check=check)

    # --- set-up and tear-down ----------------------------------------------------------------

    def start(self) -> None:
        for node in (self.node1, self.node2):
            node.run_dir.mkdir(parents=True)
        # One after the other: the first start may probe qemu (30 s) into the shared cache.
        self.node1.start()
        self.node2.start()
        self._underlay()
        self._keys()
        self._start_sshd()

    def _underlay(self) -> None:
        # Run in node1 (`ip -n`), the peer made in node2: neither end is ever in the root ns.
        run(
            "ip", "-n", self.node1.name, "link", "add", UNDERLAY, "type", "veth",
            "peer", "name", UNDERLAY, "netns", self.node2.name,
        )  # fmt: skip
        for node, address in ((self.node1, NODE1_IP), (self.node2, NODE2_IP)):
            run("ip", "-n", node.name, "addr", "add", f"{address}/24", "dev", UNDERLAY)
            run("ip", "-n", node.name, "link", "set", UNDERLAY, "up")
        self.node1_exec("busybox", "ping", "-c", "1", "-W", "5", NODE2_IP)  # no iputils here

    def _keys(self) -> None:
        self.ssh_dir.mkdir(mode=0o700)
        keygen = ("ssh-keygen", "-q", "-t", "ed25519", "-N", "")
        run(*keygen, "-C", "vdc-e2e-mh client", "-f", str(self.key))
        host_key = self.node2.run_dir / "ssh_host_ed25519_key"
        run(*keygen, "-C", "vdc-e2e-mh node2", "-f", str(host_key))
        kind, public = host_key.with_suffix(".pub").read_text().split()[:2]
        known_hosts = self.ssh_dir / "known_hosts"
        known_hosts.write_text(f"{NODE2_IP} {kind} {public}\n")
        for name, prefix in (("ssh", ""), ("ssh-via-node1", f"ip netns exec {self.node1.name} ")):
            wrapper = self.ssh_dir / name
            wrapper.write_text(SSH_WRAPPER.format(prefix=prefix, known_hosts=known_hosts))
            wrapper.chmod(0o700)
        (self.node2.run_dir / "sshd_config").write_text(
            SSHD_CONFIG.format(address=NODE2_IP, host_key=host_key)
        )

    def _start_sshd(self, timeout: float = 30) -> None:
        # node2's fresh /run needs what a host's has: /run/lock (virDomainOpenConsole locks
        # the pty there), /run/sshd. authorized_keys goes there too: sshd checks the modes
        # of every folder above it, and /tmp is world-writable.
        run(
            *self.node2.host_exec(
                "sh", "-c",
                "install -d -m 1777 /run/lock && install -d -m 0755 /run/sshd /run/vdc-ssh"
                ' && install -m 0600 "$0" /run/vdc-ssh/authorized_keys',
                str(self.key.with_suffix(".pub")),
            )
        )  # fmt: skip
        log = (self.node2.run_dir / "sshd.log").open("ab")
        config = str(self.node2.run_dir / "sshd_config")
        self._sshd = subprocess.Popen(
            self.node2.host_exec("/usr/sbin/sshd", "-D", "-e", "-f", config),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while self.node2_ssh("true", check=False).returncode != 0:
            if self._sshd.poll() is not None or time.monotonic() > deadline:
                sshd_log = (self.node2.run_dir / "sshd.log").read_text()[-2000:]
                raise RuntimeError(f"sshd on node2 does not answer: {sshd_log}")
            time.sleep(0.3)

    def stop(self) -> None:
        """sshd, then each node (guests, networks, libvirtd, virtlogd, what is left in its
        network namespace, all by pid; then the namespace), then the files."""
        if self._sshd is not None and self._sshd.poll() is None:
            self._sshd.send_signal(signal.SIGTERM)
            self._sshd.wait(timeout=20)
        for node in (self.node2, self.node1):
            node.stop()
        shutil.rmtree(self.run_dir, ignore_errors=True)

    # --- the overlay: one L2 segment across both hosts ---------------------------------------

    def overlay(self, node1_bridge: str, node2_bridge: str, vni: int, mtu: int = 1450) -> None:
        """A VXLAN port (VNI `vni`, UDP 4789 over the underlay) on node1's bridge (libvirt's,
        existing) and on node2's, a plain bridge without address made here, over ssh. Each
        port floods to its peer (all-zero fdb entry: one `append` per peer host) and learns
        where MACs live. `dev ul0` matters: without it the VXLAN port's MTU is 1500, not
        the underlay's minus 50, and full-size frames vanish."""
        port = f"vx{vni}"

        def commands(local: str, bridge: str) -> str:
            return (
                f"link add {port} type vxlan id {vni} local {local} dev {UNDERLAY}"
                f" dstport 4789\nlink set {port} mtu {mtu} master {bridge} up\n"
            )

        def flood(peer: str) -> str:
            return f"fdb append 00:00:00:00:00:00 dev {port} dst {peer}\n"

        n1 = self.node1.name
        run_input(["ip", "-n", n1, "-batch", "-"], commands(NODE1_IP, node1_bridge))
        run_input(["bridge", "-n", n1, "-batch", "-"], flood(NODE2_IP))
        # STP off and no forward delay, as libvirt makes its bridges: a Linux bridge without
        # STP still holds a new port in "learning" for forward_delay (15 s by default).
        bridge = f"link add {node2_bridge} mtu {mtu} type bridge stp_state 0 forward_delay 0\n"
        self.node2_ssh("ip", "-batch", "-", stdin=bridge + f"link set {node2_bridge} up\n")
        self.node2_ssh("ip", "-batch", "-", stdin=commands(NODE2_IP, node2_bridge))
        self.node2_ssh("bridge", "-batch", "-", stdin=flood(NODE1_IP))


def run_input(args: list[str], stdin: str) -> None:
    """A local command fed `stdin` (`ip -batch -`: many steps, one process, no shell)."""
    subprocess.run(args, input=stdin, check=True, capture_output=True, text=True, timeout=60)


# --- libvirt on any host, remote included: storage without shared paths ------------------


def dir_pool(conn: libvirt.virConnect, name: str, path: str) -> libvirt.virStoragePool:
    """A dir pool at `path` on the connection's host (made there if missing), running."""
    pool = conn.storagePoolDefineXML(
        f"<pool type='dir'><name>{name}</name><target><path>{path}</path>"
        "<permissions><mode>0755</mode></permissions></target></pool>"
    )
    pool.create(libvirt.VIR_STORAGE_POOL_CREATE_WITH_BUILD)
    return pool


def upload(pool: libvirt.virStoragePool, name: str, source: Path) -> libvirt.virStorageVol:
    """Copies `source` into a new volume through libvirt's upload stream (the bytes travel
    in the libvirt connection, over ssh for a remote host). The volume is declared raw,
    sized to the file; the refresh then reads the file's own format."""
    size = source.stat().st_size
    volume = pool.createXML(
        f"<volume><name>{name}</name><capacity unit='bytes'>{size}</capacity>"
        "<target><format type='raw'/></target></volume>"
    )
    stream = pool.connect().newStream(0)
    volume.upload(stream, 0, size, 0)
    with source.open("rb") as file:
        stream.sendAll(lambda _stream, count, f: f.read(count), file)
    stream.finish()
    pool.refresh(0)
    return pool.storageVolLookupByName(name)


def overlay_volume(
    pool: libvirt.virStoragePool, name: str, base: libvirt.virStorageVol
) -> libvirt.virStorageVol:
    """A qcow2 volume whose backing store is `base` (qcow2, format stated, never probed)."""
    capacity = base.info()[1]
    return pool.createXML(
        f"<volume><name>{name}</name><capacity unit='bytes'>{capacity}</capacity>"
        "<target><format type='qcow2'/></target>"
        f"<backingStore><path>{base.path()}</path><format type='qcow2'/></backingStore></volume>"
    )


def download(pool: libvirt.virStoragePool, name: str, offset: int = 0) -> bytes:
    """A file of the pool's folder from `offset` to its end as it is now, through libvirt's
    download stream: how a guest's serial log kept in a "console" pool on a remote host
    is read (and tailed, by offset) without ssh. A lookup sees the file's current size;
    only a file new since the last refresh needs one."""
    try:
        volume = pool.storageVolLookupByName(name)
    except libvirt.libvirtError:
        pool.refresh(0)
        volume = pool.storageVolLookupByName(name)
    stream = pool.connect().newStream(0)
    volume.download(stream, offset, 0, 0)  # length 0: up to the end of the file
    chunks: list[bytes] = []
    stream.recvAll(lambda _stream, data, out: out.append(data), chunks)
    stream.finish()
    return b"".join(chunks)

"""libvirtd (and virtlogd) of its own, inside a network namespace and a private mount
namespace, so every bridge, dnsmasq, guest and packet of an e2e run stays in there.

The facts behind this (docs/architecture.md, "Running libvirtd for tests"):
- tmpfs over /run/libvirt, /var/lib/libvirt, /var/log/libvirt and a private copy of
  /etc/libvirt: nothing the run defines touches the machine's libvirt;
- /var/cache/libvirt on a cache folder kept between runs: libvirt probes qemu's
  capabilities once (about 30 s under emulation), not at every start;
- an empty root-only file over /dev/kvm and `namespaces = [ ]`: libvirt does not probe the
  nested KVM that hangs on these machines;
- the API socket in the run folder (unix sockets are not bound to a network namespace),
  so processes outside the namespace can still reach libvirtd through a file path;
- or, for a host that must look remote (tests/e2e/multihost.py), the default socket path
  inside its private mount namespace, and folders of the machine (another host's files)
  hidden under an empty tmpfs.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

MOUNT_SCRIPT = """\
set -eu
run="$1"; cache="$2"; no_kvm="$3"; shift 3
for dir in "$@"; do  # what this host must not see of the machine: another host's files
  mkdir -p "$dir"; mount -t tmpfs -o mode=0755 tmpfs "$dir"
done
for dir in /run/libvirt /var/lib/libvirt /var/log/libvirt; do
  mkdir -p "$dir"; mount -t tmpfs tmpfs "$dir"
done
mount --bind "$run/etc-libvirt" /etc/libvirt
mount --bind "$cache" /var/cache/libvirt
if [ -n "$no_kvm" ] && [ -e /dev/kvm ]; then mount --bind "$no_kvm" /dev/kvm; fi
virtlogd --daemon --pid-file "$run/virtlogd.pid"
exec libvirtd --pid-file "$run/libvirtd.pid"
"""

QEMU_CONF = """\
# e2e: guests run as Debian's libvirt-qemu user (libvirt hands it the disks, as on a real
# host), with no per-guest mount namespace and no security labels.
security_driver = "none"
namespaces = [ ]
"""


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), check=check, capture_output=True, text=True, timeout=120)


class LibvirtNamespace:
    """`name`: the network namespace's (a fresh one by default). `own_socket=False`: libvirtd
    listens where it does on a real host (/run/libvirt, inside its mount namespace), so only
    processes in there reach it: through `host_exec`, or ssh into the namespace. `hide`:
    folders covered with an empty tmpfs in its mount namespace."""

    def __init__(
        self,
        run_dir: Path,
        cache_dir: Path,
        name: str = "",
        own_socket: bool = True,
        hide: tuple[Path, ...] = (),
        kvm: bool = True,
    ) -> None:
        self.run_dir = run_dir
        self.cache_dir = cache_dir
        self.name = name or f"vdc-e2e-{uuid.uuid4().hex[:8]}"
        self.own_socket = own_socket
        self.hide = hide
        # Where /dev/kvm opens, guests may run under KVM: vdc boots a probe guest to find
        # out whether they really can (on the development machines they cannot).
        self.kvm = kvm
        self.socket = run_dir / "sock" / "libvirt-sock"
        self._libvirtd: subprocess.Popen[bytes] | None = None
        self._log = run_dir / "libvirtd.log"

    @property
    def uri(self) -> str:
        """The URI from anywhere on the machine; only from `host_exec` when not own_socket."""
        return f"qemu:///system?socket={self.socket}" if self.own_socket else "qemu:///system"

    def netns_exec(self, *args: str) -> list[str]:
        """The argument list that runs `args` inside the network namespace."""
        return ["ip", "netns", "exec", self.name, *args]

    def host_exec(self, *args: str) -> list[str]:
        """The argument list that runs `args` in libvirtd's network and mount namespaces, as
        on that host (virtlogd's: it outlives a libvirtd restart)."""
        virtlogd = int((self.run_dir / "virtlogd.pid").read_text().strip())
        mnt, net = f"/proc/{virtlogd}/ns/mnt", f"/proc/{virtlogd}/ns/net"
        return ["nsenter", f"--mount={mnt}", f"--net={net}", *args]

    def virsh(self, *args: str) -> subprocess.CompletedProcess[str]:
        if self.own_socket:
            return run("virsh", "-c", self.uri, *args, check=False)
        return run(*self.host_exec("virsh", "-c", self.uri, *args), check=False)

    def start(self, timeout: float = 180) -> None:
        run("ip", "netns", "add", self.name)
        run("ip", "-n", self.name, "link", "set", "lo", "up")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        script = self.run_dir / "start-libvirtd.sh"
        script.write_text(MOUNT_SCRIPT)
        with self._log.open("ab") as log:
            self._libvirtd = subprocess.Popen(
                self.netns_exec(
                    "unshare",
                    "--mount",
                    "--propagation",
                    "private",
                    "sh",
                    str(script),
                    str(self.run_dir),
                    str(self.cache_dir),
                    "" if self.kvm else str(self.cache_dir.parent / "no-kvm"),
                    *map(str, self.hide),
                ),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_until_it_answers(timeout)

    def _wait_until_it_answers(self, timeout: float) -> None:
        assert self._libvirtd is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._libvirtd.poll() is not None:
                raise RuntimeError(f"libvirtd exited: {self._log.read_text()[-3000:]}")
            ready = self.socket.exists() if self.own_socket else self._virtlogd_started()
            if ready and self.virsh("version").returncode == 0:
                return
            time.sleep(0.3)
        raise RuntimeError(
            f"libvirtd did not answer within {timeout:.0f}s: {self._log.read_text()[-3000:]}"
        )

    def _virtlogd_started(self) -> bool:
        pid_file = self.run_dir / "virtlogd.pid"
        return pid_file.exists() and pid_file.read_text().strip() != ""

    def _write_config(self) -> None:
        etc = self.run_dir / "etc-libvirt"
        shutil.copytree("/etc/libvirt", etc, symlinks=True)
        # Nothing from the machine's own libvirt: no default network, no autostart.
        for folder in ("qemu", "storage", "secrets"):
            shutil.rmtree(etc / folder, ignore_errors=True)
        (etc / "qemu" / "networks").mkdir(parents=True)
        (etc / "qemu.conf").write_text(QEMU_CONF)
        (self.run_dir / "sock").mkdir()
        socket = f'unix_sock_dir = "{self.run_dir / "sock"}"\n' if self.own_socket else ""
        (etc / "libvirtd.conf").write_text(
            f'{socket}unix_sock_rw_perms = "0700"\nlog_outputs = "3:stderr"\n'
        )
        # Kept in the cache, not the run folder: libvirt compares /dev/kvm's ctime with the
        # one in its capability cache, and a new file each run would throw the cache away.
        no_kvm = self.cache_dir.parent / "no-kvm"
        if not no_kvm.exists():
            no_kvm.touch(mode=0o000)

    def stop_libvirtd(self) -> None:
        """Stops libvirtd alone (guests and virtlogd go on), as an upgrade or a crash would."""
        assert self._libvirtd is not None
        self._libvirtd.send_signal(signal.SIGTERM)
        self._libvirtd.wait(timeout=30)

    def restart_libvirtd(self, timeout: float = 120) -> None:
        """Starts libvirtd again in the same network and mount namespaces (virtlogd keeps
        the latter alive), so it finds its networks and reconnects to running guests."""
        with self._log.open("ab") as log:
            self._libvirtd = subprocess.Popen(
                self.host_exec("libvirtd", "--pid-file", str(self.run_dir / "libvirtd.pid")),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_until_it_answers(timeout)

    def stop(self) -> None:
        """Ends every guest, network and daemon this run started, then the namespace."""
        if self._libvirtd is not None and self._libvirtd.poll() is None:
            for domain in self.virsh("list", "--name").stdout.split():
                self.virsh("destroy", domain)
            for network in self.virsh("net-list", "--name").stdout.split():
                self.virsh("net-destroy", network)
            self._libvirtd.send_signal(signal.SIGTERM)
            try:
                self._libvirtd.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._libvirtd.kill()
                self._libvirtd.wait()
        _kill_pidfile(self.run_dir / "virtlogd.pid")
        # Whatever is left in the namespace was started by this run (dnsmasq of a network
        # libvirt never stopped, an ssh session): by pid, before the namespace goes.
        for pid in run("ip", "netns", "pids", self.name, check=False).stdout.split():
            _kill_pid(int(pid))
        run("ip", "netns", "del", self.name, check=False)


def _kill_pidfile(path: Path) -> None:
    """virtlogd daemonizes itself; its pid file says which process it became."""
    try:
        pid = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return
    _kill_pid(pid)


def _kill_pid(pid: int) -> None:
    """SIGTERM, then up to 5 s for the process to go."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)

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
  so processes outside the namespace can still reach libvirtd through a file path.
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
run="$1"; cache="$2"; no_kvm="$3"
for dir in /run/libvirt /var/lib/libvirt /var/log/libvirt; do
  mkdir -p "$dir"; mount -t tmpfs tmpfs "$dir"
done
mount --bind "$run/etc-libvirt" /etc/libvirt
mount --bind "$cache" /var/cache/libvirt
if [ -e /dev/kvm ]; then mount --bind "$no_kvm" /dev/kvm; fi
virtlogd --daemon --pid-file "$run/virtlogd.pid"
exec libvirtd --pid-file "$run/libvirtd.pid"
"""

QEMU_CONF = """\
# e2e: guests run as Debian's libvirt-qemu user (libvirt hands it the disks, as on a real
# host), with no per-guest mount namespace and no security labels. That user cannot open
# the root-only file bound over /dev/kvm, so libvirt never probes KVM (root could, and
# libvirt would then re-probe qemu at every domain definition).
security_driver = "none"
namespaces = [ ]
"""


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), check=check, capture_output=True, text=True, timeout=120)


class LibvirtNamespace:
    def __init__(self, run_dir: Path, cache_dir: Path) -> None:
        self.run_dir = run_dir
        self.cache_dir = cache_dir
        self.name = f"vdc-e2e-{uuid.uuid4().hex[:8]}"
        self.socket = run_dir / "sock" / "libvirt-sock"
        self._libvirtd: subprocess.Popen[bytes] | None = None
        self._log = run_dir / "libvirtd.log"

    @property
    def uri(self) -> str:
        return f"qemu:///system?socket={self.socket}"

    def netns_exec(self, *args: str) -> list[str]:
        """The argument list that runs `args` inside the network namespace."""
        return ["ip", "netns", "exec", self.name, *args]

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
                    str(self.cache_dir.parent / "no-kvm"),
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
            if (
                self.socket.exists()
                and run("virsh", "-c", self.uri, "version", check=False).returncode == 0
            ):
                return
            time.sleep(0.3)
        raise RuntimeError(
            f"libvirtd did not answer within {timeout:.0f}s: {self._log.read_text()[-3000:]}"
        )

    def _write_config(self) -> None:
        etc = self.run_dir / "etc-libvirt"
        shutil.copytree("/etc/libvirt", etc, symlinks=True)
        # Nothing from the machine's own libvirt: no default network, no autostart.
        for folder in ("qemu", "storage", "secrets"):
            shutil.rmtree(etc / folder, ignore_errors=True)
        (etc / "qemu" / "networks").mkdir(parents=True)
        (etc / "qemu.conf").write_text(QEMU_CONF)
        (self.run_dir / "sock").mkdir()
        (etc / "libvirtd.conf").write_text(
            f'unix_sock_dir = "{self.run_dir / "sock"}"\n'
            'unix_sock_rw_perms = "0700"\n'
            'log_outputs = "3:stderr"\n'
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
        virtlogd = int((self.run_dir / "virtlogd.pid").read_text().strip())
        with self._log.open("ab") as log:
            self._libvirtd = subprocess.Popen(
                [
                    "nsenter",
                    f"--mount=/proc/{virtlogd}/ns/mnt",
                    f"--net=/proc/{virtlogd}/ns/net",
                    "libvirtd",
                    "--pid-file",
                    str(self.run_dir / "libvirtd.pid"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_until_it_answers(timeout)

    def stop(self) -> None:
        """Ends every guest, network and daemon this run started, then the namespace."""
        if self._libvirtd is not None and self._libvirtd.poll() is None:
            for domain in run(
                "virsh", "-c", self.uri, "list", "--name", check=False
            ).stdout.split():
                run("virsh", "-c", self.uri, "destroy", domain, check=False)
            for network in run(
                "virsh", "-c", self.uri, "net-list", "--name", check=False
            ).stdout.split():
                run("virsh", "-c", self.uri, "net-destroy", network, check=False)
            self._libvirtd.send_signal(signal.SIGTERM)
            try:
                self._libvirtd.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._libvirtd.kill()
                self._libvirtd.wait()
        _kill_pidfile(self.run_dir / "virtlogd.pid")
        run("ip", "netns", "del", self.name, check=False)


def _kill_pidfile(path: Path) -> None:
    """virtlogd daemonizes itself; its pid file says which process it became."""
    try:
        pid = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return
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

"""Boot the test guest under plain qemu (emulation, user-mode network) and check it works.

    python tests/e2e/guest/smoke.py [CACHE_DIR]

No libvirt, no bridge and no traffic off this machine: after building the image, the checks
run in a new network namespace that has nothing but its loopback, with qemu's user-mode
network (its own DHCP server gives 10.0.2.15, router 10.0.2.2). Connections of the guest to
10.0.2.2 reach that namespace's 127.0.0.1, where a thread serves the command channel on
port 8086. (qemu 7.2's slirp refuses a guestfwd on its own address 10.0.2.2, so restrict=on
with a guestfwd cannot serve the gateway; the empty namespace is what keeps it contained.)

Checks, in order: boot, net and disks markers, commands (echo and ping the gateway, exit
codes, stderr), a hot-plugged and unplugged volume, `poweroff -f` from a command and, on a
second boot, the ACPI power button (monitor system_powerdown). Prints what it measured.
"""

from __future__ import annotations

import http.server
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root
from tests.e2e.guest.build import build_image

MAC = "52:54:00:12:34:56"
HOSTNAME = "vdc-smoke"
ROOT_SERIAL = "vdc-root"
NET_LINE = r"VDC-E2E net ip=(\S+) mac=(\S+) hostname=(\S+) gateway=(\S+)"


class CommandChannel(http.server.ThreadingHTTPServer):
    """http://10.0.2.2:8086/cmd as the guest sees it: answers the current command."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 8086), _CommandHandler)
        self.command = b""
        self.requests: list[str] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()


class _CommandHandler(http.server.BaseHTTPRequestHandler):
    server: CommandChannel

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        body = self.server.command
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Guest:
    def __init__(
        self, image: Path, workdir: Path, name: str, channel: CommandChannel, nic: bool = True
    ) -> None:
        self.channel = channel
        self.serial = workdir / f"{name}.serial"
        self.monitor = workdir / f"{name}.monitor"
        argv = [
            "qemu-system-x86_64",
            "-machine", "pc,accel=tcg",
            "-m", "256",
            "-display", "none",
            "-no-reboot",
            "-drive", f"file={image},if=none,id=root,format=qcow2,snapshot=on",
            "-device", f"virtio-blk-pci,drive=root,serial={ROOT_SERIAL}",
            *(["-netdev", f"user,id=n0,hostname={HOSTNAME}",
               "-device", f"virtio-net-pci,netdev=n0,mac={MAC}"] if nic else []),
            "-serial", f"file:{self.serial}",
            "-monitor", f"unix:{self.monitor},server,nowait",
        ]  # fmt: skip
        self.started = time.monotonic()
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL)

    def lines(self) -> list[str]:
        if not self.serial.exists():
            return []
        return self.serial.read_text(errors="replace").replace("\r", "").splitlines()

    def wait_for(self, pattern: str, timeout: float, after: int = 0) -> tuple[int, re.Match[str]]:
        """Index and match of the first serial line from `after` on that matches pattern."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, line in enumerate(self.lines()[after:], start=after):
                match = regex.fullmatch(line)
                if match:
                    return i, match
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        tail = "\n".join(self.lines()[-20:])
        raise AssertionError(f"no serial line matching {pattern!r}; last lines:\n{tail}")

    def hmp(self, command: str) -> str:
        """Run a human monitor command; its output (empty if qemu quit meanwhile)."""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.monitor))
            s.settimeout(10)
            received = b""
            while not received.endswith(b"(qemu) "):
                received += s.recv(4096)  # banner and first prompt
            s.sendall(command.encode() + b"\n")
            received = b""
            while not received.endswith(b"(qemu) "):
                chunk = s.recv(4096)
                if not chunk:
                    break
                received += chunk
            return received.decode(errors="replace")

    def send(self, command_id: str, script: str) -> None:
        self.channel.command = f"ID {command_id}\n{script}\n".encode()

    def wait_exit(self, timeout: float) -> float:
        begin = time.monotonic()
        self.process.wait(timeout=timeout)
        return time.monotonic() - begin

    @contextmanager
    def running(self) -> Iterator[Guest]:
        """Kills qemu at the end; on a failure, shows the serial console first."""
        try:
            yield self
        except BaseException:
            print(f"serial console of {self.serial.name}:", file=sys.stderr)
            print("\n".join(f"  {line}" for line in self.lines()), file=sys.stderr)
            raise
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()


def smoke(image: Path) -> None:
    """The checks; runs inside the empty network namespace."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    channel = CommandChannel()
    with tempfile.TemporaryDirectory(prefix="vdc-guest-smoke-") as tmp:
        workdir = Path(tmp)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(workdir / "vol.qcow2"),
                        "64M"], check=True)  # fmt: skip
        with Guest(image, workdir, "first", channel).running() as guest:
            guest.wait_for(r"VDC-E2E boot", 60)
            boot_at = time.monotonic() - guest.started
            i, net = guest.wait_for(NET_LINE, 60)
            net_at = time.monotonic() - guest.started
            assert net.groups() == ("10.0.2.15", MAC, HOSTNAME, "10.0.2.2"), net.group(0)
            i, disks = guest.wait_for(r"VDC-E2E disks (.*)", 10, after=i)
            assert re.fullmatch(rf"vda:\d+:{ROOT_SERIAL}", disks.group(1)), disks.group(0)
            i, _ = guest.wait_for(r"VDC-E2E ready", 10, after=i)
            print(f"boot marker {boot_at:.1f} s, net line {net_at:.1f} s after qemu start")

            guest.send("1", "echo hello; ping -c 1 10.0.2.2")
            i, _ = guest.wait_for(r"VDC-E2E cmd-begin 1", 15, after=i)
            begin_at = i
            i, end = guest.wait_for(r"VDC-E2E cmd-end 1 rc=(\d+)", 30, after=i)
            output = guest.lines()[begin_at + 1 : i]
            assert "hello" in output and any("1 packets received" in o for o in output), output
            assert end.group(1) == "0", end.group(0)
            assert "/cmd?ip=10.0.2.15" in channel.requests, channel.requests[-3:]

            guest.send("2", "echo oops >&2; exit 3")
            i, end = guest.wait_for(r"VDC-E2E cmd-end 2 rc=(\d+)", 15, after=i)
            assert end.group(1) == "3" and guest.lines()[i - 1] == "oops", guest.lines()[i - 2 : i]

            begin = time.monotonic()
            guest.hmp(f"drive_add 0 if=none,id=vol1,file={workdir / 'vol.qcow2'},format=qcow2")
            guest.hmp("device_add virtio-blk-pci,drive=vol1,id=vol1dev,serial=vol-1")
            i, _ = guest.wait_for(rf"VDC-E2E disks vda:\d+:{ROOT_SERIAL} vdb:131072:vol-1", 30,
                                  after=i)  # fmt: skip
            print(f"hot-plugged volume seen after {time.monotonic() - begin:.1f} s")
            begin = time.monotonic()
            guest.hmp("device_del vol1dev")
            i, _ = guest.wait_for(rf"VDC-E2E disks vda:\d+:{ROOT_SERIAL}", 30, after=i)
            print(f"unplugged volume gone after {time.monotonic() - begin:.1f} s")

            guest.send("3", "poweroff -f")
            guest.wait_for(r"VDC-E2E cmd-begin 3", 15, after=i)
            print(f"poweroff -f: qemu exited {guest.wait_exit(30):.1f} s after cmd-begin")
        channel.command = b""
        print("serial console of the first boot:")
        print("\n".join(f"  {line}" for line in guest.lines()))

        # Second boot without a NIC: DHCP fails until one is hot-plugged; then the power button.
        with Guest(image, workdir, "second", channel, nic=False).running() as guest:
            i, _ = guest.wait_for(r"VDC-E2E net-failed", 60)
            i, _ = guest.wait_for(r"VDC-E2E net-failed", 10, after=i + 1)
            guest.hmp(f"netdev_add user,id=n0,hostname={HOSTNAME}")
            guest.hmp(f"device_add virtio-net-pci,netdev=n0,mac={MAC},id=nic0")
            i, net = guest.wait_for(NET_LINE, 60, after=i)
            assert net.groups() == ("10.0.2.15", MAC, HOSTNAME, "10.0.2.2"), net.group(0)
            guest.wait_for(r"VDC-E2E ready", 10, after=i)
            print("no NIC at boot: net-failed, then the net line once a NIC was hot-plugged")
            begin = time.monotonic()
            guest.hmp("system_powerdown")
            guest.wait_exit(30)
            print(f"system_powerdown: qemu exited {time.monotonic() - begin:.1f} s after it")
    print("smoke: all checks passed")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--in-netns"] and len(argv) == 2:
        smoke(Path(argv[1]))
        return 0
    cache_dir = Path(argv[0]) if argv else Path(tempfile.gettempdir()) / "vdc-e2e-guest-cache"
    begin = time.monotonic()
    image = build_image(cache_dir)
    print(f"image {image} ({image.stat().st_size} bytes), {time.monotonic() - begin:.1f} s")
    sys.stdout.flush()
    inner = [sys.executable, str(Path(__file__).resolve()), "--in-netns", str(image)]
    return subprocess.run(["unshare", "--net", "--", *inner], check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Boot the minimal systemd guest (systemd_disk.py) under plain qemu, with vdc-init planted in
a copy of its disk, and check that vdc-init sets it up through bash's /dev/tcp.

    python -m tests.e2e.guest.systemd_smoke [CACHE_DIR]      # as root

No libvirt, no bridge and no traffic off this machine: the boot runs in a new network
namespace that has only its loopback (`unshare --net`), qemu's emulation (TCG) and its
user-mode network (DHCP 10.0.2.15; connections to 10.0.2.2 reach the namespace's
127.0.0.1), where a thread serves an EC2-style metadata service on port 8169 that requires
an IMDSv2 token. The copy of the disk gets, without mounting it (debugfs on the ext4
partition): vdc-init as /usr/local/sbin/vdc-init, its unit enabled as `image prepare
--install-init` enables it, and /etc/default/vdc-init pointing it at http://10.0.2.2:8169.

Checks: the initramfs hands over to systemd, systemd reaches the multi-user target,
vdc-init says it uses bash, gets a token (PUT, HTTP/1.0) and every GET carries it, and the
guest's own report (vdc-e2e-report.service) shows the hostname, the public key and the
user-data's proof, no other HTTP client, and vdc-init active; then the ACPI power button
(monitor system_powerdown) powers it off through logind. Prints what it measured.
"""

from __future__ import annotations

import http.server
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from app.guest import INSTALLED_SCRIPT, INSTALLED_UNIT, vdc_init_script, vdc_init_unit
from tests.e2e.guest import systemd_disk

PORT = 8169
INSTANCE_ID = "i-systemd1"
HOSTNAME = "sysd-1.example.internal"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBsystemdsystemdsystemdsystemdsystemd0 e2e"
TOKEN = "c3lzdGVtZC10b2tlbg.42"
USER_DATA = b"""#!/bin/bash
echo "user-data ran as $(id -u) on $(hostname)" >> /var/tmp/user-data-proof
echo VDC-E2E user-data-ran
"""
PATHS = {
    "meta-data/instance-id": INSTANCE_ID.encode(),
    "meta-data/local-hostname": HOSTNAME.encode(),
    "meta-data/local-ipv4": b"10.0.2.15",
    "meta-data/public-keys/": b"0=e2e",
    "meta-data/public-keys/0/openssh-key": KEY.encode() + b"\n",
    "user-data": USER_DATA,
}


class Metadata(http.server.ThreadingHTTPServer):
    """The metadata service as the guest sees it at http://10.0.2.2:8169: tokens required."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", PORT), _MetadataHandler)
        self.requests: list[tuple[str, str, str, str | None]] = []  # method, path, version, token
        threading.Thread(target=self.serve_forever, daemon=True).start()


class _MetadataHandler(http.server.BaseHTTPRequestHandler):
    server: Metadata

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self) -> None:
        self.server.requests.append(("PUT", self.path, self.request_version, None))
        if (
            self.path != "/latest/api/token"
            or not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "").isdigit()
        ):
            return self._answer(400, b"Bad Request")
        self._answer(200, TOKEN.encode())

    def do_GET(self) -> None:
        token = self.headers.get("X-aws-ec2-metadata-token")
        self.server.requests.append(("GET", self.path, self.request_version, token))
        if token != TOKEN:
            return self._answer(401, b"Unauthorized")
        body = PATHS.get(self.path.removeprefix("/latest/"))
        self._answer(404, b"Not Found") if body is None else self._answer(200, body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def plant_vdc_init(disk: Path, settings: str) -> None:
    """vdc-init, its unit (enabled) and /etc/default/vdc-init into the root filesystem of
    disk (partition 2, ext4), with debugfs: nothing is mounted."""
    offset = systemd_disk.ROOT_START * systemd_disk.SECTOR
    with tempfile.TemporaryDirectory(prefix="vdc-plant-") as tmp:
        files = {
            INSTALLED_SCRIPT: (vdc_init_script(), 0o755),
            INSTALLED_UNIT: (vdc_init_unit(), 0o644),
            "/etc/default/vdc-init": (settings, 0o644),
        }
        commands = []
        for n, (target, (text, mode)) in enumerate(files.items()):
            local = Path(tmp) / str(n)
            local.write_text(text)
            local.chmod(mode)  # debugfs's write takes the mode of the local file
            commands += [f"rm {target}", f"write {local} {target}"]
        wants = "/etc/systemd/system/multi-user.target.wants/vdc-init.service"
        commands += [f"rm {wants}", f"symlink {wants} {INSTALLED_UNIT}"]
        script = Path(tmp) / "commands"
        script.write_text("\n".join(commands) + "\n")
        # rm of a file not there yet prints an error and goes on.
        subprocess.run(
            ["debugfs", "-w", "-f", str(script), f"{disk}?offset={offset}"],
            capture_output=True,
            check=True,
        )
        check = subprocess.run(
            ["debugfs", "-R", f"stat {INSTALLED_SCRIPT}", f"{disk}?offset={offset}"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert "Mode:  0755" in check.stdout, check.stdout


class Guest:
    def __init__(self, disk: Path, workdir: Path) -> None:
        self.serial = workdir / "serial.log"
        self.monitor = workdir / "monitor"
        argv = [
            "qemu-system-x86_64",
            "-machine", "pc,accel=tcg",
            "-m", "512",
            "-display", "none",
            "-no-reboot",
            "-drive", f"file={disk},if=none,id=root,format=raw",
            "-device", "virtio-blk-pci,drive=root",
            "-netdev", "user,id=n0",
            "-device", "virtio-net-pci,netdev=n0",
            "-serial", f"file:{self.serial}",
            "-monitor", f"unix:{self.monitor},server,nowait",
        ]  # fmt: skip
        self.started = time.monotonic()
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL)

    def lines(self) -> list[str]:
        if not self.serial.exists():
            return []
        return self.serial.read_text(errors="replace").replace("\r", "").splitlines()

    def wait_for(self, pattern: str, timeout: float) -> tuple[float, re.Match[str]]:
        """Seconds since qemu started, and the match of the first line that has pattern."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines():
                match = regex.search(line)
                if match:
                    return time.monotonic() - self.started, match
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        tail = "\n".join(self.lines()[-30:])
        raise AssertionError(f"no serial line with {pattern!r}; last lines:\n{tail}")

    def powerdown(self) -> None:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.monitor))
            s.settimeout(10)
            received = b""
            while not received.endswith(b"(qemu) "):
                received += s.recv(4096)
            s.sendall(b"system_powerdown\n")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def boot_check(image: Path) -> None:
    """The checks; runs inside the empty network namespace."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    metadata = Metadata()
    with tempfile.TemporaryDirectory(prefix="vdc-systemd-smoke-", dir=image.parent) as tmp:
        workdir = Path(tmp)
        disk = workdir / "disk.raw"
        subprocess.run(["cp", "--sparse=always", str(image), str(disk)], check=True)
        plant_vdc_init(disk, f"VDC_INIT_METADATA_URL=http://10.0.2.2:{PORT}\n")
        guest = Guest(disk, workdir)
        try:
            measured: dict[str, float] = {}
            measured["initramfs"], _ = guest.wait_for(r"VDC-E2E boot", 120)
            # In boot order: multi-user.target waits for vdc-init and the report.
            measured["vdc-init"], _ = guest.wait_for(r"vdc-init: using bash", 300)
            measured["vdc-init done"], _ = guest.wait_for(r"vdc-init: done", 120)
            measured["report"], _ = guest.wait_for(r"VDC-E2E ready", 60)
            measured["multi-user"], _ = guest.wait_for(r"Reached target .*Multi-User System", 60)
            report = [
                line[line.index("VDC-E2E report ") + 15 :]
                for line in guest.lines()
                if "VDC-E2E report " in line
            ]
            console = "\n".join(guest.lines())
            assert "vdc-init: using bash (/dev/tcp, HTTP/1.0)" in console
            short = HOSTNAME.partition(".")[0]
            first = rf"hostname={short} addresses=10\.0\.2\.15(,\S+)*"  # and IPv6 ones
            assert re.fullmatch(first, report[0]), report
            assert "tools=-" in report, report  # no curl, wget, busybox, python3, nc
            assert "http=bash" in report, report
            assert "vdc-init=active" in report, report
            assert f"key {KEY}" in report, report
            assert f"user-data user-data ran as 0 on {short}" in report, report
            assert f"instance {INSTANCE_ID} (metadata at http://10.0.2.2:{PORT}, " in console
            assert "IMDSv2 token, bash)" in console
            assert "VDC-E2E user-data-ran" in console
            assert metadata.requests[0] == ("PUT", "/latest/api/token", "HTTP/1.0", None)
            gets = [r for r in metadata.requests if r[0] == "GET"]
            assert gets and all(r[2:] == ("HTTP/1.0", TOKEN) for r in gets), gets

            begin = time.monotonic()
            guest.powerdown()
            guest.process.wait(timeout=120)
            measured["powerdown"] = time.monotonic() - begin
        except BaseException:
            print("serial console:", file=sys.stderr)
            print("\n".join(f"  {line}" for line in guest.lines()), file=sys.stderr)
            raise
        finally:
            guest.stop()
            lines = guest.lines()
    print("serial console (vdc-init and report lines):")
    for line in lines:
        if "vdc-init" in line or "VDC-E2E" in line:
            print(f"  {line}")
    powerdown = measured.pop("powerdown")
    print(
        "under TCG, seconds after qemu started: "
        + ", ".join(f"{name} {seconds:.1f}" for name, seconds in measured.items())
        + f"; system_powerdown to qemu exit {powerdown:.1f}"
    )
    print("systemd-smoke: all checks passed")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--in-netns"] and len(argv) == 2:
        boot_check(Path(argv[1]))
        return 0
    cache_dir = Path(argv[0]) if argv else Path("/var/cache/vdc-e2e/guest")
    for tool in ("qemu-system-x86_64", "debugfs", "unshare"):
        if shutil.which(tool) is None:
            print(f"systemd-smoke: needs {tool}", file=sys.stderr)
            return 1
    begin = time.monotonic()
    image = systemd_disk.build_systemd_disk(cache_dir)
    print(f"image {image} ({image.stat().st_size} bytes), {time.monotonic() - begin:.1f} s")
    sys.stdout.flush()
    inner = [sys.executable, "-m", "tests.e2e.guest.systemd_smoke", "--in-netns", str(image)]
    root = Path(__file__).resolve().parents[3]  # -m needs the repository as the folder
    return subprocess.run(["unshare", "--net", "--", *inner], cwd=root, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""vdc-init, the guest boot script, run as a guest would run it: under busybox sh (or dash),
with only busybox applets on PATH (plus curl, GNU wget or ssh-keygen where a case says so),
against a small EC2-style metadata server on 127.0.0.1. VDC_INIT_ROOT points the script at
a folder instead of /.

Each run is in a UTS namespace of its own: the script really sets the hostname (busybox sh
runs its own `hostname` applet whatever PATH says), and must never set the test machine's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from app.guest import vdc_init_script

BUSYBOX = shutil.which("busybox") or "/bin/busybox"
DASH = shutil.which("dash") or "/bin/dash"
# Root may unshare the UTS namespace alone; anyone else needs a user namespace for it.
ISOLATED = ["unshare", "--uts"] if os.geteuid() == 0 else ["unshare", "-r", "--uts"]
# Runs vdc-init ($1, under shell $0) as a boot would, after a hostname the image came with.
BOOT = 'hostname image-default; "$0" "$1"; rc=$?; echo "HOSTNAME-AFTER=$(hostname)"; exit $rc'
KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ0aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa alice"
KEY_B = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb bob"
USER_DATA = b'#!/bin/sh\necho ran-as-$(id -u) >> "$VDC_INIT_ROOT/user-data-proof"\n'
TOKEN = "dG9rZW4tZm9yLXRlc3Rz.1234"


@dataclass
class Metadata:
    """What the fake service answers, and what it was asked."""

    paths: dict[str, bytes]
    tokens: str = "optional"  # optional | required | unsupported (PUT is 405, as IMDSv1)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)

    def for_instance(self, instance_id: str, hostname: str, keys: list[str]) -> None:
        self.paths = {
            "meta-data/instance-id": instance_id.encode(),
            "meta-data/local-hostname": hostname.encode(),
            "meta-data/local-ipv4": b"10.0.0.5",
            "meta-data/public-keys/": "\n".join(f"{n}=key{n}" for n in range(len(keys))).encode(),
            **{
                f"meta-data/public-keys/{n}/openssh-key": (key + "\n").encode()
                for n, key in enumerate(keys)
            },
            "user-data": USER_DATA,
        }


def _handler(metadata: Metadata) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _answer(self, status: int, body: bytes = b"") -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_PUT(self) -> None:  # http.server's naming
            metadata.requests.append(("PUT", self.path, None))
            ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
            if metadata.tokens == "unsupported":
                self._answer(405, b"Method Not Allowed")
            elif self.path != "/latest/api/token" or not ttl.isdigit():
                self._answer(400, b"Bad Request")
            else:
                self._answer(200, TOKEN.encode())

        def do_GET(self) -> None:
            token = self.headers.get("X-aws-ec2-metadata-token")
            metadata.requests.append(("GET", self.path, token))
            if token is not None and token != TOKEN:
                return self._answer(401, b"Unauthorized")
            if token is None and metadata.tokens == "required":
                return self._answer(401, b"Unauthorized")
            body = metadata.paths.get(self.path.removeprefix("/latest/"))
            self._answer(404, b"Not Found") if body is None else self._answer(200, body)

    return Handler


@pytest.fixture
def metadata() -> Iterator[tuple[Metadata, str]]:
    service = Metadata(paths={})
    service.for_instance("i-first001", "web-1.example.internal", [KEY_A])
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(service))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield service, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@dataclass
class Guest:
    """A guest's root folder and a PATH of busybox applets (with or without some tools)."""

    root: Path
    bin: Path
    url: str
    hostnames: list[str] = field(default_factory=list)  # after each run

    def run(self, tries: int = 3, shell: str = BUSYBOX) -> subprocess.CompletedProcess[str]:
        script = self.root.parent / "vdc-init"
        script.write_text(vdc_init_script())
        args = [BUSYBOX, "sh", "-c", BOOT, "sh", str(script)]
        if shell == DASH:
            args = [DASH, "-c", BOOT, DASH, str(script)]
        result = subprocess.run(
            [*ISOLATED, *args],
            env={
                "PATH": str(self.bin),
                "VDC_INIT_ROOT": str(self.root),
                "VDC_INIT_METADATA_URL": self.url,
                "VDC_INIT_TRIES": str(tries),
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.hostnames.append(result.stdout.rpartition("HOSTNAME-AFTER=")[2].strip())
        return result

    def add_tool(self, name: str) -> None:
        found = shutil.which(name)
        assert found, f"{name} is needed on the test machine"
        (self.bin / name).symlink_to(found)


def make_guest(tmp_path: Path, url: str, without: tuple[str, ...] = ()) -> Guest:
    root = tmp_path / "root"
    for folder in ("etc/ssh", "root", "var/lib", "home/alice", "tmp"):
        (root / folder).mkdir(parents=True)
    (root / "etc/passwd").write_text(
        f"root:x:0:0:root:/root:/bin/sh\nalice:x:{os.getuid() + 4242}:4242::/home/alice:/bin/sh\n"
    )
    (root / "etc/hosts").write_text("127.0.0.1 localhost\n10.9.9.9 printer.lan printer\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True)
    for applet in applets.stdout.split():
        if applet not in without:
            (bin_dir / applet).symlink_to(BUSYBOX)
    return Guest(root=root, bin=bin_dir, url=url)


def log_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith("vdc-init: ")]


# --- the whole first boot, as a busybox guest does it ------------------------------------


@pytest.mark.parametrize("shell", [BUSYBOX, DASH], ids=["busybox-sh", "dash"])
def test_busybox_guest_gets_token_by_nc_and_sets_everything_up(
    tmp_path: Path, metadata: tuple[Metadata, str], shell: str
) -> None:
    service, url = metadata
    guest = make_guest(tmp_path, url)
    result = guest.run(shell=shell)
    assert result.returncode == 0, result.stdout + result.stderr

    # IMDSv2: one PUT for the token (through nc), then every GET carries it.
    assert ("PUT", "/latest/api/token", None) in service.requests
    gets = [r for r in service.requests if r[0] == "GET"]
    assert gets and all(token == TOKEN for _, _, token in gets)

    assert guest.hostnames == ["web-1"]
    assert (guest.root / "etc/hostname").read_text() == "web-1\n"
    assert (guest.root / "etc/hosts").read_text() == (
        "127.0.0.1 localhost\n10.9.9.9 printer.lan printer\n"
        "10.0.0.5 web-1.example.internal web-1 # vdc-init\n"
    )
    keys = guest.root / "root/.ssh/authorized_keys"
    assert keys.read_text() == KEY_A + "\n"
    assert keys.stat().st_mode & 0o777 == 0o600
    assert (guest.root / "root/.ssh").stat().st_mode & 0o777 == 0o700
    assert (guest.root / "user-data-proof").read_text() == f"ran-as-{os.getuid()}\n"

    logged = "\n".join(log_lines(result))
    assert "instance i-first001 (metadata at http://127.0.0.1" in logged
    assert "IMDSv2 token, wget" in logged
    assert "hostname web-1; /etc/hosts: 10.0.0.5 web-1.example.internal web-1" in logged
    assert "public keys for root: 1 added to /root/.ssh/authorized_keys" in logged
    assert "running user-data" in logged and "user-data exited with status 0" in logged
    assert "no ssh-keygen: no SSH host keys made" in logged
    assert log_lines(result)[-1] == "vdc-init: done"


def test_one_time_work_runs_once_per_instance_id(
    tmp_path: Path, metadata: tuple[Metadata, str]
) -> None:
    service, url = metadata
    guest = make_guest(tmp_path, url)
    assert guest.run().returncode == 0

    again = guest.run()  # a reboot of the same instance
    assert again.returncode == 0, again.stdout
    assert "one-time set-up of i-first001 already done" in again.stdout
    assert (guest.root / "user-data-proof").read_text().count("ran-as") == 1
    assert (guest.root / "root/.ssh/authorized_keys").read_text() == KEY_A + "\n"
    # Hostname and /etc/hosts are every boot's work; the vdc-init line is replaced, not added.
    assert guest.hostnames == ["web-1", "web-1"]
    assert (guest.root / "etc/hosts").read_text().count("# vdc-init") == 1

    # An image made from this disk boots as another instance: the one-time work runs again.
    service.for_instance("i-second02", "db-2", [KEY_B])
    other = guest.run()
    assert "first boot of i-second02: one-time set-up" in other.stdout
    assert (guest.root / "user-data-proof").read_text().count("ran-as") == 2
    assert (guest.root / "root/.ssh/authorized_keys").read_text() == f"{KEY_A}\n{KEY_B}\n"
    assert (guest.root / "etc/hosts").read_text().endswith("10.0.0.5 db-2 # vdc-init\n")
    assert (guest.root / "var/lib/vdc-init/instance-id").read_text() == "i-second02\n"


# --- token, fallback, HTTP clients ----------------------------------------------------------


def test_busybox_wget_without_nc_falls_back_to_plain_gets(
    tmp_path: Path, metadata: tuple[Metadata, str]
) -> None:
    service, url = metadata
    guest = make_guest(tmp_path, url, without=("nc",))
    # dash: busybox sh would find its own nc applet whatever PATH says.
    result = guest.run(shell=DASH)
    assert result.returncode == 0, result.stdout
    assert not [r for r in service.requests if r[0] == "PUT"]
    assert all(token is None for _, _, token in service.requests)
    assert "plain GETs, wget" in result.stdout
    assert guest.hostnames == ["web-1"]


def test_gnu_wget_puts_for_the_token_itself(tmp_path: Path, metadata: tuple[Metadata, str]) -> None:
    service, url = metadata
    service.tokens = "required"
    guest = make_guest(tmp_path, url, without=("wget", "nc"))
    guest.add_tool("wget")
    result = guest.run(shell=DASH)  # busybox sh would prefer its own wget applet
    assert result.returncode == 0, result.stdout
    assert "IMDSv2 token, wget" in result.stdout
    assert service.requests[0] == ("PUT", "/latest/api/token", None)
    assert (guest.root / "user-data-proof").exists()


def test_curl_gets_a_token_where_the_service_requires_one(
    tmp_path: Path, metadata: tuple[Metadata, str]
) -> None:
    service, url = metadata
    service.tokens = "required"
    guest = make_guest(tmp_path, url)
    guest.add_tool("curl")
    result = guest.run()
    assert result.returncode == 0, result.stdout
    assert "IMDSv2 token, curl" in result.stdout
    assert service.requests[0] == ("PUT", "/latest/api/token", None)
    assert (guest.root / "root/.ssh/authorized_keys").read_text() == KEY_A + "\n"


def test_curl_falls_back_to_plain_gets_where_put_is_refused(
    tmp_path: Path, metadata: tuple[Metadata, str]
) -> None:
    service, url = metadata
    service.tokens = "unsupported"  # an IMDSv1-only service, like Wakame-vdc's own
    guest = make_guest(tmp_path, url)
    guest.add_tool("curl")
    result = guest.run()
    assert result.returncode == 0, result.stdout
    assert "plain GETs, curl" in result.stdout
    assert ("PUT", "/latest/api/token", None) in service.requests
    assert (guest.root / "user-data-proof").exists()


def test_no_answer_means_nothing_done_and_a_retry_next_boot(tmp_path: Path) -> None:
    guest = make_guest(tmp_path, "http://127.0.0.1:9")  # discard port: nobody there
    result = guest.run(tries=2)
    assert result.returncode == 1
    assert "no answer from the metadata service at http://127.0.0.1:9 after 2 tries" in (
        result.stdout
    )
    assert guest.hostnames == ["image-default"]
    assert not (guest.root / "root/.ssh").exists()
    assert not (guest.root / "var/lib/vdc-init/instances").exists()


# --- what it installs -----------------------------------------------------------------------


def test_makes_ssh_host_keys_only_when_the_image_has_none(
    tmp_path: Path, metadata: tuple[Metadata, str]
) -> None:
    _, url = metadata
    guest = make_guest(tmp_path, url)
    guest.add_tool("ssh-keygen")
    first = guest.run()
    assert first.returncode == 0, first.stdout
    made = sorted(p.name for p in (guest.root / "etc/ssh").iterdir())
    assert made == [
        f"ssh_host_{t}_key{suffix}" for t in ("ecdsa", "ed25519", "rsa") for suffix in ("", ".pub")
    ]
    assert first.stdout.count("created SSH host key") == 3
    before = (guest.root / "etc/ssh/ssh_host_ed25519_key").read_bytes()

    second = guest.run()
    assert "SSH host keys present" in second.stdout
    assert (guest.root / "etc/ssh/ssh_host_ed25519_key").read_bytes() == before


def test_keys_go_to_the_configured_default_user(
    tmp_path: Path, metadata: tuple[Metadata, str]
) -> None:
    _, url = metadata
    guest = make_guest(tmp_path, url)
    (guest.root / "etc/default").mkdir()
    (guest.root / "etc/default/vdc-init").write_text("VDC_INIT_USER=alice\n")
    result = guest.run()
    assert result.returncode == 0, result.stdout
    keys = guest.root / "home/alice/.ssh/authorized_keys"
    assert keys.read_text() == KEY_A + "\n"
    assert not (guest.root / "root/.ssh").exists()
    if os.geteuid() == 0:  # only root can give files away
        assert keys.stat().st_uid == os.getuid() + 4242
        assert keys.parent.stat().st_gid == 4242


def test_user_data_without_shebang_and_hostile_values_are_not_used(
    tmp_path: Path, metadata: tuple[Metadata, str]
) -> None:
    service, url = metadata
    service.paths["user-data"] = b"#cloud-config\npackages: [nginx]\n"
    service.paths["meta-data/local-hostname"] = b"evil;reboot"
    service.paths["meta-data/public-keys/0/openssh-key"] = b'command="rm -rf /" ssh-rsa AAA\n'
    guest = make_guest(tmp_path, url)
    result = guest.run()
    assert result.returncode == 0, result.stdout
    assert "user-data does not start with #!: not run" in result.stdout
    assert "ignored an invalid hostname from the metadata: evil;reboot" in result.stdout
    assert "ignored public key 0: not an OpenSSH public key line" in result.stdout
    assert guest.hostnames == ["image-default"]
    assert (guest.root / "root/.ssh/authorized_keys").read_text() == ""
    assert not (guest.root / "user-data-proof").exists()

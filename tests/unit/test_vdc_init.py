"""vdc-init, the guest boot script, run as a guest would run it: under busybox sh (or dash),
with only busybox applets on PATH (plus curl, GNU wget or ssh-keygen where a case says so),
or as on a minimal systemd distribution, with only the host's coreutils, grep, sed and
hostname on PATH, plus bash or python3 (its only ways to talk HTTP); against a small
EC2-style metadata server on 127.0.0.1. VDC_INIT_ROOT points the script at a folder
instead of /.

Each run is in a UTS namespace of its own: the script really sets the hostname (busybox sh
runs its own `hostname` applet whatever PATH says), and must never set the test machine's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from app.guest import vdc_init_script

# Where the host's own programs are (not a pyenv's or a venv's python3).
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
BUSYBOX = shutil.which("busybox") or "/bin/busybox"
DASH = shutil.which("dash") or "/bin/dash"
BASH = shutil.which("bash", path=SYSTEM_PATH) or "/bin/bash"
# What vdc-init (and the test's user-data) runs on a guest without busybox: a minimal
# Debian's coreutils, grep, sed and hostname.
MINIMAL_TOOLS = (
    "cat", "chmod", "chown", "cp", "date", "grep", "head", "hostname", "id", "mkdir", "mv",
    "rm", "sed", "sleep", "timeout", "touch", "tr", "wc",
)  # fmt: skip
# Root may unshare the UTS namespace alone; anyone else needs a user namespace for it. By
# its path: a guest's PATH may have no unshare.
UNSHARE = shutil.which("unshare", path=SYSTEM_PATH) or "/usr/bin/unshare"
ISOLATED = [UNSHARE, "--uts"] if os.geteuid() == 0 else [UNSHARE, "-r", "--uts"]
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
    # Each request's HTTP version and Host header, in the same order.
    seen: list[tuple[str, str | None]] = field(default_factory=list)
    # Paths whose answer says Content-Length: 100 more than it sends (a cut connection).
    cut_short: set[str] = field(default_factory=set)

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
            extra = 100 if self.path.removeprefix("/latest/") in metadata.cut_short else 0
            self.send_header("Content-Length", str(len(body) + extra))
            self.end_headers()
            self.wfile.write(body)

        def do_PUT(self) -> None:  # http.server's naming
            metadata.requests.append(("PUT", self.path, None))
            metadata.seen.append((self.request_version, self.headers.get("Host")))
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
            metadata.seen.append((self.request_version, self.headers.get("Host")))
            if token is not None and token != TOKEN:
                return self._answer(401, b"Unauthorized")
            if token is None and metadata.tokens == "required":
                return self._answer(401, b"Unauthorized")
            body = metadata.paths.get(self.path.removeprefix("/latest/"))
            self._answer(404, b"Not Found") if body is None else self._answer(200, body)

    return Handler


@contextmanager
def serve_metadata() -> Iterator[tuple[Metadata, str]]:
    """The fake service for instance i-first001, and its URL."""
    service = Metadata(paths={})
    service.for_instance("i-first001", "web-1.example.internal", [KEY_A])
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(service))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield service, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def metadata() -> Iterator[tuple[Metadata, str]]:
    with serve_metadata() as served:
        yield served


@dataclass
class Guest:
    """A guest's root folder and its PATH: busybox applets (with or without some tools), or
    a minimal distribution's tools."""

    root: Path
    bin: Path
    url: str
    hostnames: list[str] = field(default_factory=list)  # after each run

    def run(self, tries: int = 3, shell: str = BUSYBOX) -> subprocess.CompletedProcess[str]:
        """A boot: vdc-init run by shell (busybox's sh, dash or bash, by its path)."""
        script = self._script()
        args = [BUSYBOX, "sh", "-c", BOOT, "sh", str(script)]
        if shell != BUSYBOX:
            args = [shell, "-c", BOOT, shell, str(script)]
        result = self._isolated(args, tries)
        self.hostnames.append(result.stdout.rpartition("HOSTNAME-AFTER=")[2].strip())
        return result

    def which_http(self, shell: str = DASH) -> subprocess.CompletedProcess[str]:
        """`vdc-init --which-http`, as image prepare would run it in the image."""
        shell_args = [BUSYBOX, "sh"] if shell == BUSYBOX else [shell]
        return self._isolated([*shell_args, str(self._script()), "--which-http"], tries=3)

    def _script(self) -> Path:
        script = self.root.parent / "vdc-init"
        script.write_text(vdc_init_script())
        return script

    def _isolated(self, args: list[str], tries: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
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

    def add_tool(self, name: str, path: str | None = None) -> None:
        found = shutil.which(name, path=path)
        assert found, f"{name} is needed on the test machine"
        (self.bin / name).symlink_to(found)


def _guest_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    for folder in ("etc/ssh", "root", "var/lib", "home/alice", "tmp"):
        (root / folder).mkdir(parents=True)
    (root / "etc/passwd").write_text(
        f"root:x:0:0:root:/root:/bin/sh\nalice:x:{os.getuid() + 4242}:4242::/home/alice:/bin/sh\n"
    )
    (root / "etc/hosts").write_text("127.0.0.1 localhost\n10.9.9.9 printer.lan printer\n")
    return root


def make_guest(tmp_path: Path, url: str, without: tuple[str, ...] = ()) -> Guest:
    root = _guest_root(tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True)
    for applet in applets.stdout.split():
        if applet not in without:
            (bin_dir / applet).symlink_to(BUSYBOX)
    return Guest(root=root, bin=bin_dir, url=url)


def make_minimal_guest(tmp_path: Path, url: str, tools: tuple[str, ...]) -> Guest:
    """A guest as a minimal systemd distribution has it: no busybox, no curl, no wget, no nc;
    the host's MINIMAL_TOOLS and tools (bash, python3, busybox, ...) on PATH."""
    (tmp_path / "bin").mkdir()
    guest = Guest(root=_guest_root(tmp_path), bin=tmp_path / "bin", url=url)
    for tool in (*MINIMAL_TOOLS, *tools):
        guest.add_tool(tool, path=SYSTEM_PATH)
    return guest


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
    # No busybox on PATH either: `busybox nc` would do.
    guest = make_guest(tmp_path, url, without=("nc", "busybox"))
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


# --- without curl, wget or busybox: python3, bash's /dev/tcp --------------------------------

# The answers of a minimal distribution's guest, by its only way to talk HTTP.
RAW_WAYS = {
    "bash": (("bash",), "using bash (/dev/tcp, HTTP/1.0)"),
    "python3": (("python3",), "using python3 (urllib)"),
}


def assert_set_up(
    guest: Guest, service: Metadata, result: subprocess.CompletedProcess[str]
) -> None:
    """The whole first boot happened, with an IMDSv2 token on every GET."""
    assert result.returncode == 0, result.stdout + result.stderr
    assert service.requests[0] == ("PUT", "/latest/api/token", None)
    gets = [r for r in service.requests if r[0] == "GET"]
    assert gets and all(token == TOKEN for _, _, token in gets)
    assert guest.hostnames == ["web-1"]
    assert (guest.root / "etc/hostname").read_text() == "web-1\n"
    assert (
        (guest.root / "etc/hosts")
        .read_text()
        .endswith("10.0.0.5 web-1.example.internal web-1 # vdc-init\n")
    )
    assert (guest.root / "root/.ssh/authorized_keys").read_text() == KEY_A + "\n"
    assert (guest.root / "user-data-proof").read_text() == f"ran-as-{os.getuid()}\n"
    logged = "\n".join(log_lines(result))
    assert "public keys for root: 1 added to /root/.ssh/authorized_keys" in logged
    assert "user-data exited with status 0" in logged
    assert log_lines(result)[-1] == "vdc-init: done"


@pytest.mark.parametrize("shell", [BASH, DASH], ids=["bash", "dash"])
def test_minimal_guest_with_only_bash_talks_http_by_dev_tcp(
    tmp_path: Path, metadata: tuple[Metadata, str], shell: str
) -> None:
    service, url = metadata
    service.tokens = "required"
    guest = make_minimal_guest(tmp_path, url, ("bash",))
    result = guest.run(shell=shell)
    assert_set_up(guest, service, result)
    # HTTP/1.0 by hand, with the Host header.
    address = url.removeprefix("http://")
    assert service.seen and all(seen == ("HTTP/1.0", address) for seen in service.seen)
    assert log_lines(result)[0] == "vdc-init: using bash (/dev/tcp, HTTP/1.0)"
    assert "IMDSv2 token, bash)" in result.stdout


def test_minimal_guest_with_only_python3_talks_http_by_urllib(
    tmp_path: Path, metadata: tuple[Metadata, str]
) -> None:
    service, url = metadata
    service.tokens = "required"
    guest = make_minimal_guest(tmp_path, url, ("python3",))  # and no bash
    result = guest.run(shell=DASH)
    assert_set_up(guest, service, result)
    assert log_lines(result)[0] == "vdc-init: using python3 (urllib)"
    assert "IMDSv2 token, python3)" in result.stdout


def test_debian_busybox_package_without_links_is_used_as_busybox_wget(
    tmp_path: Path, metadata: tuple[Metadata, str]
) -> None:
    service, url = metadata
    service.tokens = "required"
    guest = make_minimal_guest(tmp_path, url, ("busybox", "bash"))
    result = guest.run(shell=DASH)
    assert_set_up(guest, service, result)  # the token through `busybox nc`
    assert log_lines(result)[0] == "vdc-init: using busybox wget"
    assert "IMDSv2 token, busybox-wget)" in result.stdout


@pytest.mark.parametrize("way", RAW_WAYS)
def test_raw_ways_take_only_a_200_and_the_body_byte_for_byte(
    tmp_path: Path, metadata: tuple[Metadata, str], way: str
) -> None:
    service, url = metadata
    service.tokens = "unsupported"  # PUT answers 405: plain GETs
    # A 404 (no hostname, no public keys) is no answer, not a value.
    for path in ("meta-data/local-hostname", "meta-data/public-keys/"):
        del service.paths[path]
    # A body of every byte, blank CRLF lines and a status line in it; kept as it came.
    user_data = b"#!/bin/sh\nexit 0\n" + bytes(range(256)) + b"\r\n\r\nHTTP/1.0 200 OK\r\n\r\n"
    service.paths["user-data"] = user_data
    # A connection cut before Content-Length bytes came is no answer either.
    service.cut_short.add("meta-data/local-ipv4")
    tools, using = RAW_WAYS[way]
    guest = make_minimal_guest(tmp_path, url, tools)
    result = guest.run(shell=DASH)
    assert result.returncode == 0, result.stdout + result.stderr
    assert log_lines(result)[0] == f"vdc-init: {using}"
    assert f"plain GETs, {way})" in result.stdout
    assert ("PUT", "/latest/api/token", None) in service.requests
    assert all(token is None for _, _, token in service.requests)
    assert "no hostname in the metadata: hostname left as it is" in result.stdout
    assert guest.hostnames == ["image-default"]
    assert "no public key in the metadata" in result.stdout
    stored = guest.root / "var/lib/vdc-init/instances/i-first001/user-data"
    assert stored.read_bytes() == user_data
    assert "user-data exited with status 0" in result.stdout

    # local-ipv4 cut short: /etc/hosts falls back to 127.0.1.1 (after a hostname).
    service.paths["meta-data/local-hostname"] = b"web-1"
    again = guest.run(shell=DASH)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "hostname web-1; /etc/hosts: 127.0.1.1 web-1" in again.stdout


@pytest.mark.parametrize(
    ("tools", "expected"),
    [
        (("curl", "wget", "busybox", "python3", "bash"), "curl"),
        (("wget", "busybox", "python3", "bash"), "wget"),
        (("busybox", "python3", "bash"), "busybox-wget"),
        (("python3", "bash"), "python3"),
        (("bash",), "bash"),
    ],
    ids=["curl", "wget", "busybox-wget", "python3", "bash"],
)
def test_which_http_names_the_way_it_would_use_and_changes_nothing(
    tmp_path: Path, metadata: tuple[Metadata, str], tools: tuple[str, ...], expected: str
) -> None:
    service, url = metadata
    guest = make_minimal_guest(tmp_path, url, tools)
    result = guest.which_http()
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == f"{expected}\n"
    assert not service.requests
    assert not (guest.root / "var/lib/vdc-init").exists()


def test_busybox_guest_which_http_is_wget(tmp_path: Path, metadata: tuple[Metadata, str]) -> None:
    _, url = metadata
    guest = make_guest(tmp_path, url)
    for shell in (BUSYBOX, DASH):
        result = guest.which_http(shell=shell)
        assert (result.returncode, result.stdout) == (0, "wget\n"), result.stderr


def test_no_way_to_talk_http_is_said_and_nothing_done(
    tmp_path: Path, metadata: tuple[Metadata, str]
) -> None:
    service, url = metadata
    guest = make_minimal_guest(tmp_path, url, ())
    expected = "vdc-init: no curl, wget, busybox, python3 or bash here: cannot reach the metadata"
    which = guest.which_http()
    assert which.returncode == 1
    assert which.stdout.startswith(expected)
    boot = guest.run(shell=DASH)
    assert boot.returncode == 1
    assert log_lines(boot) == [which.stdout.strip()]
    assert guest.hostnames == ["image-default"]
    assert not service.requests

"""Every shell command in README.md and docs/*.md, run as written against a real `vdc
serve`, so the documentation cannot drift from the code again.

The ```sh blocks run in order, in one bash, in a sandbox that looks like the README's
machine without touching this one: a private mount namespace with a tmpfs over /var/lib
(so /var/lib/vdc starts empty), a private network namespace with only loopback (so
127.0.0.1:8000 and 0.0.0.0:8775 are free), and `vdc serve` started there the way `make run`
starts it. The working folder holds what a reader brings: `.venv`, an image to upload
(`ubuntu.qcow2`) and an SSH public key (`~/.ssh/id_ed25519.pub`).

The README's own text runs, with two substitutions:
- the libvirt host `qemu:///system` is a libvirt test:// host (VDC_ALLOW_TEST_HOSTS is set):
  no guest is needed to follow the API;
- a placeholder `wmi-...`, `i-...`, `vol-...`, `key-...` is the newest id of that kind the
  commands before it printed, as a reader would copy it.

A command fails the test when it exits non-zero, when vdc answers curl with an HTTP error
(curl runs with --fail-with-body), or when an instance, a volume or a job ends in error.
Between commands the test waits for vdc's jobs to finish, as a reader waits for `running`.

A block that needs what the sandbox cannot have (a KVM host, a guest, Docker, apt) is
marked in the document, on the line before it and invisible on GitHub:

    <!-- docs-test: skip: needs a real KVM host -->

It is not run; the test prints it with its reason, and passes only when every other block
ran to the end.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.ids import PREFIXES
from tests.conftest import NODE_XML, qemu_img

ROOT = Path(__file__).parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
VENV = Path(sys.executable).parent.parent
SKIP = re.compile(r"<!--\s*docs-test:\s*skip:\s*(?P<reason>.+?)\s*-->")
FENCE = re.compile(r"^```(?P<lang>\S*)\s*$")
KINDS = "|".join(sorted(PREFIXES.values(), key=len, reverse=True))  # wmi, key, i, ...
ID = re.compile(rf"(?<![\w-])(?P<prefix>{KINDS})-[a-z0-9]{{8}}(?![\w-])")
PLACEHOLDER = re.compile(rf"(?<![\w-])(?P<prefix>{KINDS})-\.\.\.")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None,
    reason="needs root, unshare and iproute2 (private mount and network namespaces)",
)


@dataclass
class Block:
    document: str  # README.md, docs/guest-images.md
    line: int  # of the opening fence
    commands: list[str]
    skip: str | None  # the reason it is not run here

    @property
    def where(self) -> str:
        return f"{self.document}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The ```sh blocks of a Markdown file, each with its commands (continuation lines
    joined; comment and blank lines dropped) and its skip marker's reason, if any."""
    found: list[Block] = []
    lines = path.read_text().splitlines()
    name = str(path.relative_to(ROOT))
    index = 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if not fence:
            index += 1
            continue
        end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
        if fence.group("lang") == "sh":
            before = next((lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), "")
            marker = SKIP.fullmatch(before.strip())
            commands = split_commands(lines[index + 1 : end])
            found.append(Block(name, index + 1, commands, marker and marker.group("reason")))
        index = end + 1
    return found


def split_commands(lines: list[str]) -> list[str]:
    commands: list[str] = []
    current = ""
    for line in lines:
        current = f"{current}\n{line}" if current else line
        if line.endswith("\\"):
            continue
        if current.strip() and not current.lstrip().startswith("#"):
            commands.append(current)
        current = ""
    return commands


def test_every_marker_stands_before_a_block() -> None:
    """A marker anywhere else would skip nothing (or the wrong block) without saying so."""
    for path in DOCUMENTS:
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines, 1):
            if SKIP.fullmatch(line.strip()):
                following = next((item for item in lines[number:] if item.strip()), "")
                assert following == "```sh", f"{path.name}:{number}: marker before no sh block"


# --- the sandbox ---------------------------------------------------------------------------


class Sandbox:
    """One bash in private mount and network namespaces; commands run in it one by one."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder = folder
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--net", "--propagation", "private", "bash", "--norc"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=folder,
            env=env,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.count = 0
        self.server_pid = 0  # the `vdc serve` started in it

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def run(self, command: str, timeout: float = 300) -> tuple[int, str]:
        """Runs `command` (its variables stay for the next ones); (exit status, output)."""
        self.count += 1
        output = self.folder.parent / f"output-{self.count}.txt"
        marker = f"done-{uuid.uuid4().hex}"
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{{\n{command}\n}} >{output} 2>&1 </dev/null\necho {marker} $?\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        noise: list[str] = []
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.1))
            except queue.Empty:
                pytest.fail(f"no answer within {timeout:g}s from: {command}")
            if line is None:
                pytest.fail(f"the sandbox's shell ended at: {command}\n{''.join(noise)}")
            if line.startswith(marker):
                text = output.read_text() if output.exists() else ""
                return int(line.split()[1]), "".join(noise) + text
            noise.append(line)  # bash's own complaints (a syntax error, ...)

    def close(self) -> None:
        if self.server_pid:
            _stop(self.server_pid)
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # the shell ends, and the namespaces with it
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # only the shell this test started
            self.proc.wait()


def _stop(pid: int) -> None:
    """Stops the `vdc serve` this test started, by its pid, and waits for it to go."""
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            os.kill(pid, 0)  # raises once it is gone
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    folder = tmp_path / "reader"
    home = folder / "home"
    (home / ".ssh").mkdir(parents=True)
    key = Ed25519PrivateKey.generate().public_key()
    public = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    (home / ".ssh" / "id_ed25519.pub").write_bytes(public + b" reader@laptop\n")
    (folder / ".venv").symlink_to(VENV)
    qemu_img("create", "-f", "qcow2", str(folder / "ubuntu.qcow2"), "64M")
    wrappers = tmp_path / "bin"
    wrappers.mkdir()
    curl = wrappers / "curl"
    curl.write_text('#!/bin/sh\nexec /usr/bin/curl --fail-with-body "$@"\n')
    curl.chmod(0o755)
    env = {
        "PATH": f"{wrappers}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "COLUMNS": "200",
        "VDC_ALLOW_TEST_HOSTS": "true",  # the README's host is a test:// one here
    }
    opened = Sandbox(folder, env)
    yield opened
    opened.close()


def start_vdc(sandbox: Sandbox, log: Path) -> None:
    """What `make run` does once the packages and the venv are there, in the sandbox."""
    for command in (
        "ip link set lo up",
        "mount -t tmpfs -o mode=0755 vdc-docs-test /var/lib",
        f". .venv/bin/activate && vdc migrate && {{ vdc serve >{log} 2>&1 & echo $! ; }}",
    ):
        status, output = sandbox.run(command, timeout=120)
        assert status == 0, f"{command}: {output}"
    sandbox.server_pid = int(output.split()[-1])
    deadline = time.monotonic() + 60
    while sandbox.run("curl -s http://127.0.0.1:8000/healthz")[0] != 0:
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.3)


SETTLE = """
import sqlite3, sys, time
db = sqlite3.connect("/var/lib/vdc/vdc.sqlite3", timeout=10)
deadline = time.monotonic() + float(sys.argv[1])
busy = "SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')"
while db.execute(busy).fetchone()[0]:
    if time.monotonic() > deadline:
        sys.exit("jobs still running after " + sys.argv[1] + " s")
    time.sleep(0.2)
for (what,) in db.execute(
    "SELECT 'instance ' || id || ': ' || state_reason FROM instances WHERE state = 'error'"
    " UNION ALL SELECT 'volume ' || id || ': ' || state_reason FROM volumes WHERE state = 'error'"
    " UNION ALL SELECT 'job ' || kind || ': ' || last_error FROM jobs WHERE state = 'failed'"
):
    print(what)
"""


def settle(sandbox: Sandbox, timeout: float = 60) -> str:
    """Waits until vdc has no job to do; what ended in error, if anything did. (Read in the
    sandbox: SQLite cannot open a file through /proc/PID/root.)"""
    script = sandbox.folder.parent / "settle.py"
    if not script.exists():
        script.write_text(SETTLE)
    status, output = sandbox.run(f"{sys.executable} {script} {timeout}")
    return output.strip() if status == 0 else f"cannot tell: {output}"


class Ids:
    """For the README's `i-...`: of each kind, the id a command printed last for the first
    time (a list that shows it again does not make an older id the newest)."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.newest: dict[str, str] = {}

    def note(self, output: str) -> None:
        for found in ID.finditer(output):
            if found.group(0) not in self.seen:
                self.seen.add(found.group(0))
                self.newest[found.group("prefix")] = found.group(0)

    def fill(self, command: str) -> str:
        def one(placeholder: re.Match[str]) -> str:
            prefix = placeholder.group("prefix")
            assert prefix in self.newest, f"no {prefix}-... printed before: {command}"
            return self.newest[prefix]

        return PLACEHOLDER.sub(one, command)


def test_every_documented_command_runs(
    sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node = tmp_path / "node.xml"
    node.write_text(NODE_XML.format(cpus=8, memory_kib=16 * 1024 * 1024))
    substitutions = {"qemu:///system": f"test://{node}"}
    ids = Ids()
    ran: list[str] = []
    not_run: list[Block] = []
    start_vdc(sandbox, tmp_path / "serve.log")
    for path in DOCUMENTS:
        for block in blocks(path):
            if block.skip:
                not_run.append(block)
                continue
            for written in block.commands:
                command = ids.fill(written)
                for text, replacement in substitutions.items():
                    command = command.replace(text, replacement)
                status, output = sandbox.run(command)
                assert status == 0, f"{block.where}: `{written}` exited {status}:\n{output}"
                problems = settle(sandbox)
                assert not problems, f"{block.where}: after `{written}`: {problems}"
                ids.note(output)
                ran.append(f"{block.where}: {written.splitlines()[0]}")
    with capsys.disabled():  # shown in every run, not only on failure
        print(f"\ndocs: {len(ran)} commands run; blocks not run here, and why:")
        for block in not_run:
            print(f"  {block.where}: {block.skip}")
    assert len(ran) >= 30, ran  # the extraction found the README's commands

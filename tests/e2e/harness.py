"""The e2e world: a network namespace with its own libvirtd, `vdc serve` inside it, the test
guest image registered, and helpers that drive vdc only through its public HTTP API.

Guests are read through vdc's console API (markers printed by the guest agent, see
tests/e2e/guest/README.md) and given commands through the command server.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.libvirt_ns import LibvirtNamespace

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
NETWORK_CIDR = "10.111.0.0/24"
NET_LINE = re.compile(r"VDC-E2E net ip=(\S+) mac=(\S+) hostname=(\S+) gateway=(\S+)")


@dataclass
class Timing:
    instance_id: str
    launch_to_ip: float


@dataclass
class E2E:
    ns: LibvirtNamespace
    run_dir: Path
    data_dir: Path
    env: dict[str, str]
    image_path: Path
    timings: list[Timing] = field(default_factory=list)
    _processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    api: httpx.Client | None = None
    _server: subprocess.Popen[bytes] | None = None
    image_id: str = ""
    network_id: str = ""

    # --- set-up and tear-down ---------------------------------------------------------------

    def start(self) -> None:
        self.ns.start()
        self.manage_raw(BIN / "vdc", "migrate")
        self.manage("host", "add", "node1", "--uri", self.ns.uri)
        self.network_id = self.manage(
            "network", "add", "e2e", "--cidr", NETWORK_CIDR, "--dns", "10.111.0.1", "--default"
        )
        imports = self.data_dir / "import"
        imports.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.image_path, imports / "vdc-e2e-guest.qcow2")
        self.image_id = self.manage(
            "image",
            "add",
            "local",
            str(imports / "vdc-e2e-guest.qcow2"),
            "--arch",
            "x86_64",
            "--account-id",
            "a-shpoolxx",
            "--is-public",
            "--description",
            "busybox e2e guest",
        )
        commands = self.run_dir / "cmds"
        commands.mkdir()
        self._spawn(
            "command-server",
            sys.executable,
            str(ROOT / "tests/e2e/command_server.py"),
            "--dir",
            str(commands),
        )
        self.start_server()

    def start_server(self) -> None:
        """Starts `vdc serve` in the namespace and waits until its API answers."""
        self._server = self._spawn("vdc-serve", str(BIN / "vdc"), "serve")
        socket = self.run_dir / "api.sock"
        deadline = time.monotonic() + 60
        while not (self.data_dir / "admin.key").exists():
            if time.monotonic() > deadline:
                raise RuntimeError("vdc serve did not start: " + self.log("vdc-serve"))
            time.sleep(0.2)
        key = (self.data_dir / "admin.key").read_text().strip()
        self.api = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(socket)),
            base_url="http://vdc",
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        while True:  # a socket file left by a killed server answers nothing
            try:
                self.api.get("/healthz").raise_for_status()
                return
            except httpx.HTTPError:
                if self._server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "vdc serve did not start: " + self.log("vdc-serve")
                    ) from None
                time.sleep(0.2)

    def kill_server(self) -> None:
        """kill -9 of `vdc serve` (only the process this run started): no clean-up at all."""
        assert self._server is not None
        self._server.send_signal(signal.SIGKILL)
        self._server.wait(timeout=30)

    def stop(self) -> None:
        try:
            if self.api is not None:  # terminate what is left, through vdc, while it runs
                for instance in self.get("/api/v1/instances", params={"limit": 1000})["items"]:
                    if instance["state"] != "terminated":
                        self.api.delete(f"/api/v1/instances/{instance['id']}")
        except httpx.HTTPError:
            pass
        for process in reversed(self._processes):  # only what this run started, by pid
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.ns.stop()
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.run_dir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            self.ns.netns_exec(*args), env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        self._processes.append(process)
        return process

    def log(self, name: str) -> str:
        path = self.run_dir / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def manage_raw(self, *args: str | Path) -> str:
        result = subprocess.run(
            self.ns.netns_exec(*map(str, args)),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{args}: {result.stderr}")
        return result.stdout.strip()

    def manage(self, *args: str) -> str:
        return self.manage_raw(BIN / "vdc-manage", *args)

    # --- the API --------------------------------------------------------------------------------

    def get(self, path: str, **kwargs: Any) -> Any:
        assert self.api is not None
        response = self.api.get(path, **kwargs)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, **body: Any) -> dict[str, Any]:
        """POST expecting 202 (vdc's answer to every asynchronous request)."""
        assert self.api is not None
        response = self.api.post(path, json=body)
        assert response.status_code == 202, response.text
        return dict(response.json())

    def launch(self, **body: Any) -> dict[str, Any]:
        assert self.api is not None
        body.setdefault("image_id", self.image_id)
        body.setdefault("instance_type", "nano")
        response = self.api.post("/api/v1/instances", json=body)
        assert response.status_code == 202, response.text
        instance: dict[str, Any] = response.json()
        instance["_launched_at"] = time.monotonic()
        return instance

    def action(self, instance_id: str, action: str) -> dict[str, Any]:
        assert self.api is not None
        response = self.api.post(f"/api/v1/instances/{instance_id}/{action}")
        assert response.status_code == 202, response.text
        return dict(response.json())

    def terminate(self, instance_id: str) -> None:
        assert self.api is not None
        address = self.get(f"/api/v1/instances/{instance_id}")["ip_address"]
        assert self.api.delete(f"/api/v1/instances/{instance_id}").status_code == 202
        # The address goes to the next guest: it must not find this one's last command.
        if address:
            (self.run_dir / "cmds" / address).unlink(missing_ok=True)

    def wait_state(self, instance_id: str, state: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            current: dict[str, Any] = self.get(f"/api/v1/instances/{instance_id}")
            if current["state"] == state:
                return current
            if current["state"] == "error" or time.monotonic() > deadline:
                raise AssertionError(
                    f"{instance_id} is {current['state']} ({current['state_reason']}), "
                    f"wanted {state}"
                )
            time.sleep(0.3)

    def console(self, instance_id: str) -> str:
        return str(self.get(f"/api/v1/instances/{instance_id}/console")["output"])

    def wait_console(
        self,
        instance_id: str,
        pattern: str,
        timeout: float = 120,
        count: int = 1,
        interval: float = 0.5,
    ) -> list[re.Match[str]]:
        """Waits until `pattern` matched `count` times in the console (read every `interval`
        seconds); returns the matches."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            matches = list(regex.finditer(self.console(instance_id).replace("\r", "")))
            if len(matches) >= count:
                return matches
            if time.monotonic() > deadline:
                tail = self.console(instance_id)[-1500:]
                raise AssertionError(
                    f"{instance_id}: {pattern!r} not seen {count}x in {timeout:.0f}s; "
                    f"console:\n{tail}"
                )
            time.sleep(interval)

    def wait_network(self, instance: dict[str, Any], timeout: float = 180) -> re.Match[str]:
        """The guest's own report of its address; records launch -> guest has IP."""
        match = self.wait_console(instance["id"], NET_LINE.pattern, timeout)[-1]
        if "_launched_at" in instance:
            self.timings.append(
                Timing(instance["id"], time.monotonic() - instance.pop("_launched_at"))
            )
        return match

    def run_in_guest(
        self, instance_id: str, ip: str, script: str, timeout: float = 60
    ) -> tuple[int, str]:
        """Runs a shell script in the guest via the command channel; (exit code, output)."""
        command_id = f"c{time.monotonic_ns()}"
        (self.run_dir / "cmds" / ip).write_text(f"ID {command_id}\n{script}\n")
        pattern = rf"VDC-E2E cmd-begin {command_id}\n(.*?)VDC-E2E cmd-end {command_id} rc=(\d+)"
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.console(instance_id).replace("\r", ""), re.S)
            if match:
                (self.run_dir / "cmds" / ip).unlink(missing_ok=True)
                return int(match.group(2)), match.group(1)
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{instance_id}: command {script!r} gave no answer in {timeout:.0f}s"
                )
            time.sleep(0.5)

    # --- looking behind vdc's back (checks only) --------------------------------------

    def virsh(self, *args: str) -> str:
        return subprocess.run(
            ["virsh", "-c", self.ns.uri, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        ).stdout

    def doctor(self) -> tuple[int, list[dict[str, str]]]:
        """`vdc-manage doctor --json` in the namespace: (exit code, findings)."""
        result = subprocess.run(
            self.ns.netns_exec(str(BIN / "vdc-manage"), "doctor", "--json"),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        try:
            return result.returncode, list(json.loads(result.stdout))
        except json.JSONDecodeError:
            raise AssertionError(f"doctor: {result.stdout} {result.stderr}") from None

    def in_namespace(self, *args: str) -> str:
        """A command's output, run inside the test's network namespace (iptables, ip)."""
        return subprocess.run(
            self.ns.netns_exec(*args), capture_output=True, text=True, timeout=60, check=False
        ).stdout

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.data_dir / "vdc.sqlite3") as db:
            return list(db.execute(sql, params))


def new_world(cache: Path) -> E2E:
    """An E2E world in a fresh run folder (not under pytest's 0700 temp root: guests run as
    libvirt-qemu and must reach their disks); the guest image and libvirt's capability
    cache live in `cache` across runs."""
    from tests.e2e.guest.build import build_image

    image = build_image(cache / "guest")
    run_dir = Path(tempfile.mkdtemp(prefix="vdc-e2e-"))
    run_dir.chmod(0o711)
    return E2E(
        ns=LibvirtNamespace(run_dir, cache / "libvirt"),
        run_dir=run_dir,
        data_dir=run_dir / "data",
        env=make_env(run_dir),
        image_path=image,
    )


def make_env(run_dir: Path) -> dict[str, str]:
    data_dir = run_dir / "data"
    return {k: v for k, v in os.environ.items() if not k.startswith("VDC_")} | {
        "VDC_DATA_DIR": str(data_dir),
        "VDC_API_BIND": "127.0.0.1:8000",  # inside the namespace: reachable from there only
        "VDC_API_SOCKET": str(run_dir / "api.sock"),
        # The namespace's libvirtd has its socket in the run folder: the host URI names it.
        "VDC_HOST_URI_PARAMS": "socket",
        "VDC_METADATA_BIND": "0.0.0.0:8775",  # inside the namespace; guests reach it by DNAT
        # As the README says: vdc boots a probe guest on each host and uses KVM where it works.
        "VDC_VIRT_TYPE": "auto",
        "VDC_SYNC_INTERVAL": "1",
        "VDC_STOP_TIMEOUT": "30",
    }

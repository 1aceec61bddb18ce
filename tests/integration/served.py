"""`vdc serve` as a real process on real loopback ports, for tests of what only a real
server shows: sockets, file descriptors, timeouts, file modes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

BIN = Path(sys.executable).parent


@dataclass
class Served:
    base: str  # the API's URL
    metadata_port: int
    data_dir: Path
    output: Callable[[], str]
    pid: int = 0  # of `vdc serve` (its files, in its mount namespace: /proc/PID/root/...)

    @property
    def files(self) -> Path:
        """The data dir as the server sees it, also from outside its mount namespace."""
        if not self.pid:
            return self.data_dir
        return Path(f"/proc/{self.pid}/root") / self.data_dir.relative_to("/")

    @property
    def admin_key(self) -> str:
        return (self.files / "admin.key").read_text().strip()


@contextmanager
def vdc_serve(
    tmp_path: Path, ports: Callable[[], int], prefix: Sequence[str] = (), **extra_env: str
) -> Iterator[Served]:
    """`vdc serve` with its data dir in tmp_path/data; `prefix` runs it through another
    command (e.g. unshare with a small filesystem mounted there)."""
    data_dir = tmp_path / "data"
    api_port, metadata_port = ports(), ports()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VDC_")} | {
        "VDC_DATA_DIR": str(data_dir),
        "VDC_API_BIND": f"127.0.0.1:{api_port}",
        "VDC_METADATA_BIND": f"127.0.0.1:{metadata_port}",
        "VDC_IMPORT_DIRS": str(tmp_path),
        **extra_env,
    }
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*prefix, str(BIN / "vdc"), "serve", "--migrate"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{api_port}"
    try:
        deadline = time.monotonic() + 120  # generous: waited for, not slept
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail(f"vdc serve did not answer: {log.read_text()}")
        yield Served(base, metadata_port, data_dir, log.read_text, proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)  # only the process this test started, by its pid
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def served_world(served: Served, tmp_path: Path, host_uri: str) -> tuple[httpx.Client, str]:
    """A test:// host, a default network and a small qcow2 image on a served vdc, made as
    an admin would; (the admin's API client, the image's id)."""
    api = httpx.Client(
        base_url=served.base, headers={"Authorization": f"Bearer {served.admin_key}"}, timeout=30
    )
    host = api.post("/api/v1/host_nodes", json={"name": "host1", "uri": host_uri})
    assert host.status_code == 201, host.text
    network = api.post(
        "/api/v1/networks", json={"name": "default", "cidr": "10.10.0.0/24", "is_default": True}
    )
    assert network.status_code == 201, network.text
    disk = tmp_path / "guest.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-f", "qcow2", str(disk), "64M"], check=True, capture_output=True
    )
    image = api.post(
        "/api/v1/images",
        params={"arch": "x86_64"},
        content=disk.read_bytes(),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert image.status_code == 201, image.text
    return api, str(image.json()["id"])

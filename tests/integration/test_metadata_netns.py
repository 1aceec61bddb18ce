"""The metadata listener over a real network: `vdc serve` in one network namespace at the
network's gateway address, the "guest" in another with the instance's address, a veth
pair between them. Nothing touches the machine's own network namespace."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from tests.conftest import Keys
from tests.integration.cloud import Cloud, build_cloud

BIN = Path(sys.executable).parent

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and iproute2 (network namespaces)",
)


def sh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), check=True, capture_output=True, text=True, timeout=60)


@pytest.fixture
def wire() -> Iterator[tuple[str, str]]:
    """Two namespaces joined by a veth pair: (server ns, guest ns)."""
    tag = uuid.uuid4().hex[:6]
    server, guest = f"vdc-mds-{tag}", f"vdc-mdg-{tag}"
    sh("ip", "netns", "add", server)
    sh("ip", "netns", "add", guest)
    try:
        sh(
            "ip",
            "-n",
            server,
            "link",
            "add",
            "gw0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            guest,
        )
        sh("ip", "-n", server, "addr", "add", "10.10.0.1/24", "dev", "gw0")
        for ns, device in ((server, "gw0"), (guest, "eth0")):
            sh("ip", "-n", ns, "link", "set", device, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield server, guest
    finally:
        sh("ip", "netns", "del", guest)
        sh("ip", "netns", "del", server)


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    """SQLite only: the server runs in a namespace whose loopback cannot reach the test
    PostgreSQL (the metadata answers on PostgreSQL are in test_metadata_service.py)."""
    return sqlite_url


@pytest.fixture
def cloud(client: TestClient, keys: Keys, test_host_uri, make_disk: Callable[..., Path]) -> Cloud:  # type: ignore[no-untyped-def]
    return build_cloud(client, keys, test_host_uri(), make_disk)


def ask(guest_ns: str, source: str, path: str, headers: str = "{}") -> str:
    code = (
        "import httpx, sys;"
        f"t = httpx.HTTPTransport(local_address={source!r});"
        "c = httpx.Client(transport=t, timeout=10);"
        f"r = c.get('http://10.10.0.1:8775{path}', headers={headers});"
        "print(r.status_code); sys.stdout.write(r.text)"
    )
    return sh("ip", "netns", "exec", guest_ns, str(BIN / "python"), "-c", code).stdout


def test_guest_addresses_are_told_apart_over_a_real_wire(
    cloud: Cloud, settings: Settings, wire: tuple[str, str], tmp_path: Path
) -> None:
    server_ns, guest_ns = wire
    mine = cloud.wait_for(cloud.launch(user_data="mine")["id"], "running")
    theirs = cloud.wait_for(cloud.launch(user_data="theirs")["id"], "running")
    for instance in (mine, theirs):
        sh("ip", "-n", guest_ns, "addr", "add", f"{instance['ip_address']}/24", "dev", "eth0")
    sh("ip", "-n", guest_ns, "addr", "add", "10.10.0.200/24", "dev", "eth0")  # no instance's
    env = {k: v for k, v in os.environ.items() if not k.startswith("VDC_")} | {
        "VDC_DATA_DIR": str(settings.data_dir),
        "VDC_ALLOW_TEST_HOSTS": "true",  # test:// hosts
        "VDC_DATABASE_URL": settings.effective_database_url,
        "VDC_API_BIND": "127.0.0.1:8000",  # inside the server namespace
        "VDC_METADATA_BIND": "10.10.0.1:8775",
        "VDC_WORKERS": "0",  # this test's app already runs the jobs
        "VDC_SYNC_INTERVAL": "3600",
    }
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        ["ip", "netns", "exec", server_ns, str(BIN / "vdc"), "serve"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120  # generous: waited for, not slept
        while True:
            try:
                first = ask(guest_ns, mine["ip_address"], "/latest/meta-data/instance-id")
                break
            except subprocess.CalledProcessError:
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(0.3)
        assert first == f"200\n{mine['id']}"
        assert (
            ask(guest_ns, theirs["ip_address"], "/latest/meta-data/instance-id")
            == f"200\n{theirs['id']}"
        )
        assert ask(guest_ns, mine["ip_address"], "/latest/user-data") == "200\nmine"
        assert ask(guest_ns, theirs["ip_address"], "/latest/user-data") == "200\ntheirs"
        assert ask(guest_ns, "10.10.0.200", "/latest/meta-data/instance-id").startswith("404")
        # A forwarded header is no way to borrow another guest's identity.
        spoof = "{{'X-Forwarded-For': '{}'}}".format(mine["ip_address"])
        assert ask(guest_ns, theirs["ip_address"], "/latest/user-data", spoof) == "200\ntheirs"
    finally:
        server.terminate()  # only the process this test started
        server.wait(timeout=20)

"""`vdc serve` as a real process on a real port: what a newcomer sees after `make run`."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.served import vdc_serve

BIN = Path(sys.executable).parent


@pytest.fixture
def server(
    tmp_path: Path, free_tcp_port_factory: Callable[[], int]
) -> Iterator[tuple[str, Path, Callable[[], str]]]:
    with vdc_serve(tmp_path, free_tcp_port_factory) as served:
        yield served.base, served.data_dir, served.output


def test_first_start_writes_a_0600_admin_key_and_says_where(server) -> None:  # type: ignore[no-untyped-def]
    base, data_dir, output = server
    key_file = data_dir / "admin.key"
    assert f"created the first admin API key: {key_file} (mode 0600)" in output()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip()
    me = httpx.get(f"{base}/api/v1/accounts/me", headers={"Authorization": f"Bearer {key}"})
    assert me.status_code == 200 and me.json()["is_admin"] is True
    assert httpx.get(f"{base}/docs").status_code == 200


def test_upload_streams_over_real_http(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base, data_dir, _ = server
    key = (data_dir / "admin.key").read_text().strip()
    disk = tmp_path / "disk.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-f", "qcow2", str(disk), "1G"], check=True, capture_output=True
    )

    def body() -> Iterator[bytes]:  # chunked transfer, no Content-Length
        with disk.open("rb") as handle:
            while chunk := handle.read(64 * 1024):
                yield chunk

    response = httpx.post(
        f"{base}/api/v1/images",
        params={"arch": "x86_64", "description": "streamed"},
        content=body(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/octet-stream"},
        timeout=60,
    )
    assert response.status_code == 201, response.text
    assert response.json()["virtual_size"] == 1024**3


def test_restart_keeps_the_key_file(server, tmp_path: Path, free_tcp_port_factory) -> None:  # type: ignore[no-untyped-def]
    _, data_dir, _ = server
    key_before = (data_dir / "admin.key").read_text()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VDC_")} | {
        "VDC_DATA_DIR": str(data_dir),
        "VDC_API_BIND": f"127.0.0.1:{free_tcp_port_factory()}",
        "VDC_METADATA_BIND": f"127.0.0.1:{free_tcp_port_factory()}",
    }
    # A second server on the same data dir: prints where the key is, does not replace it.
    proc = subprocess.Popen([str(BIN / "vdc"), "serve"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == f"admin API key: {data_dir / 'admin.key'}"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    assert (data_dir / "admin.key").read_text() == key_before

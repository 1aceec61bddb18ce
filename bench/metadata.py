"""Metadata service throughput and latency against nginx serving the same answers as
static files, same machine, same run: `meta-data/instance-id` and `user-data` at 1, 16 and
64 concurrent connections (wrk, loopback only).

    .venv/bin/python bench/metadata.py [--seconds 5]     (installs nginx and wrk if missing)

The metadata listener is a real `vdc serve` (one process, its API listener idle) whose
database holds one running instance leased 127.0.0.1 on a network whose gateway is
127.0.0.1, so wrk on loopback is that instance asking.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
USER_DATA = b"#!/bin/sh\necho hello from user-data\n" * 20
PATHS = ("/latest/meta-data/instance-id", "/latest/user-data")


def ensure_tools() -> None:
    missing = [
        package
        for package, tool in (("nginx-light", "nginx"), ("wrk", "wrk"))
        if not shutil.which(tool)
    ]
    if missing:
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=True
        )


def seed(url: str) -> None:
    """One running instance whose lease is 127.0.0.1 behind gateway 127.0.0.1."""
    engine = sa.create_engine(url)
    now = datetime.now(UTC)
    rows = [
        ("INSERT INTO accounts VALUES ('a-bench000', 'bench', '', false, false, :now)", {}),
        (
            "INSERT INTO images (id, account_id, display_name, description, arch, is_public, state,"
            " source, format, virtual_size, file_size, sha256, file_name, created_at, updated_at)"
            " VALUES ('wmi-bench000', 'a-bench000', '', '', 'x86_64', true, 'available', 'upload',"
            " 'raw', 512, 512, '', 'x.raw', :now, :now)",
            {},
        ),
        (
            "INSERT INTO networks (id, name, cidr, gateway, dhcp_start, dhcp_end, dns_servers,"
            " domain, is_default, account_id, bridge, created_at) VALUES ('nw-bench000', 'lo',"
            " '127.0.0.0/24', '127.0.0.1', '127.0.0.1', '127.0.0.254', '', 'vdc.bench', false,"
            " NULL, 'vdcbench0', :now)",
            {},
        ),
        (
            "INSERT INTO instances (id, account_id, display_name, hostname, image_id,"
            " instance_type, cpu_cores, memory_size, root_disk_size, host_node_id, state,"
            " state_reason, user_data, ssh_key_id, http_tokens, created_at, updated_at,"
            " launched_at, terminated_at) VALUES"
            " ('i-bench000', 'a-bench000', '', 'bench', 'wmi-bench000', 'small', 1, 512, 0, NULL,"
            " 'running', '', :user_data, NULL, 'optional', :now, :now, :now, NULL)",
            {"user_data": USER_DATA},
        ),
        (
            "INSERT INTO network_interfaces VALUES ('vif-bench000', 'i-bench000', 'nw-bench000', 0,"
            " '52:54:00:00:be:00', '127.0.0.1', :now)",
            {},
        ),
    ]
    with engine.begin() as connection:
        for sql, params in rows:
            connection.execute(sa.text(sql), {"now": now, **params})
    engine.dispose()


def nginx_config(root: Path, port: int) -> str:
    return f"""
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {root}/tmp; proxy_temp_path {root}/tmp; fastcgi_temp_path {root}/tmp;
    uwsgi_temp_path {root}/tmp; scgi_temp_path {root}/tmp;
    default_type text/plain;
    server {{ listen 127.0.0.1:{port}; root {root}/www; }}
}}
"""


def wrk(url: str, connections: int, seconds: int) -> tuple[float, float, float]:
    """(requests per second, p50 ms, p99 ms)."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def percentile(label: str) -> float:
        value, unit = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return rps, percentile("50"), percentile("99")


def wait_for(url: str) -> None:
    for _ in range(100):
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--port", type=int, default=18881)
    args = parser.parse_args()
    ensure_tools()
    vdc_port, nginx_port = args.port, args.port + 1
    with tempfile.TemporaryDirectory(prefix="vdc-bench-md-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # nginx's worker runs as www-data and reads the files below
        env = {k: v for k, v in os.environ.items() if not k.startswith("VDC_")} | {
            "VDC_DATA_DIR": str(root / "data"),
            "VDC_API_BIND": f"127.0.0.1:{args.port + 2}",
            "VDC_METADATA_BIND": f"127.0.0.1:{vdc_port}",
            "VDC_WORKERS": "0",
            "VDC_SYNC_INTERVAL": "3600",
        }
        subprocess.run([str(BIN / "vdc"), "migrate"], env=env, check=True, capture_output=True)
        seed(f"sqlite:///{root / 'data' / 'vdc.sqlite3'}")
        (root / "www/latest/meta-data").mkdir(parents=True)
        (root / "tmp").mkdir()
        (root / "www/latest/meta-data/instance-id").write_text("i-bench000")
        (root / "www/latest/user-data").write_bytes(USER_DATA)
        (root / "nginx.conf").write_text(nginx_config(root, nginx_port))
        logs = (root / "servers.log").open("w")
        servers = [
            subprocess.Popen(
                [str(BIN / "vdc"), "serve"], env=env, stdout=logs, stderr=subprocess.STDOUT
            ),
            subprocess.Popen(
                ["nginx", "-c", str(root / "nginx.conf"), "-p", str(root)],
                stdout=logs,
                stderr=subprocess.STDOUT,
            ),
        ]
        try:
            wait_for(f"http://127.0.0.1:{vdc_port}{PATHS[0]}")
            wait_for(f"http://127.0.0.1:{nginx_port}{PATHS[0]}")
            assert httpx.get(f"http://127.0.0.1:{vdc_port}{PATHS[1]}").content == USER_DATA
            columns = (
                "conns",
                "vdc req/s",
                "nginx req/s",
                "ratio",
                "vdc p50",
                "vdc p99",
                "nginx p99",
            )
            print(f"{'path':32} " + " ".join(f"{c:>11}" for c in columns))
            ratios, p99s = [], []  # for the verdicts
            for path in PATHS:
                for connections in (1, 16, 64):
                    vdc = wrk(f"http://127.0.0.1:{vdc_port}{path}", connections, args.seconds)
                    nginx = wrk(f"http://127.0.0.1:{nginx_port}{path}", connections, args.seconds)
                    cells = (
                        f"{connections}", f"{vdc[0]:.0f}", f"{nginx[0]:.0f}",
                        f"{vdc[0] / nginx[0]:.2f}", f"{vdc[1]:.1f}ms", f"{vdc[2]:.1f}ms",
                        f"{nginx[2]:.1f}ms",
                    )  # fmt: skip
                    print(f"{path:32} " + " ".join(f"{c:>11}" for c in cells))
                    ratios.append(vdc[0] / nginx[0])
                    p99s += [vdc[2]] if connections == 64 else []
        finally:
            for server in servers:  # only the processes this benchmark started
                server.send_signal(signal.SIGTERM)
                server.wait(timeout=30)
    print("aim: vdc >= 0.5 x nginx throughput; vdc p99 < 10 ms at 64 connections")
    worst, slowest = min(ratios), max(p99s)
    print(f"throughput vs nginx, worst: {worst:.2f}x (aim: >= 0.5x)  {_verdict(worst >= 0.5)}")
    print(f"p99 at 64 connections, worst: {slowest:.1f}ms (aim: < 10 ms)  {_verdict(slowest < 10)}")


def _verdict(passed: bool) -> str:
    return "PASS" if passed else "MISS"


if __name__ == "__main__":
    main()

"""The metadata service against nginx serving the same answers as static files, same
machine, same run (wrk, loopback only), then two situations a real host meets:

1. throughput and latency: `meta-data/instance-id` and `user-data` at 1, 16 and 64
   connections, vdc next to nginx (aim: >= 0.5 x nginx, p99 < 10 ms at 64);
2. fairness: one guest hammers the service with 64 connections while another asks one
   question at a time; the other's p99, next to its p99 alone (aim: < 10 ms);
3. a busy API: 64 connections of metadata while launches keep the API and its job worker
   busy (aim: p99 < 10 ms).

    .venv/bin/python bench/metadata.py [--seconds 5] [--quick] [--parts busy,...]
                                                    (installs nginx, wrk)

The listener is a real `vdc serve` (its metadata process). Two instances are leased
127.0.0.1 and 127.0.0.2 on a network whose gateway is 127.0.0.1, so a client on loopback
from either address is that instance asking. For (1) and (3) the per-source limits are
lifted (wrk's 64 connections all come from one address); (2) runs with the defaults.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
USER_DATA = b"#!/bin/sh\necho hello from user-data\n" * 20
PATHS = ("/latest/meta-data/instance-id", "/latest/user-data")
NODE = (
    "<node><cpu><mhz>2000</mhz><model>x86_64</model><active>4096</active><nodes>1</nodes>"
    "<sockets>1</sockets><cores>4096</cores><threads>1</threads></cpu>"
    "<memory>4294967296</memory></node>"
)


def ensure_tools() -> None:
    missing = [
        p for p, tool in (("nginx-light", "nginx"), ("wrk", "wrk")) if not shutil.which(tool)
    ]
    if missing:
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=True
        )


def seed(env: dict[str, str], root: Path) -> str:
    """Two running instances leased 127.0.0.1 and .2 behind gateway 127.0.0.1, through
    vdc's own models; returns an admin key for the busy-API part."""
    os.environ.update(env)
    from sqlmodel import Session

    from app.config import Settings
    from app.db import engine_for
    from app.ids import new_id
    from app.models import Image, Instance, Network, NetworkInterface
    from app.models.instance import InstanceState
    from app.services.identity import accounts
    from app.services.network.addresses import address_number

    engine = engine_for(Settings())
    with Session(engine) as session:
        account, key = accounts.create_account(session, "bench", is_admin=True)
        session.add(
            Image(id="wmi-bench000", account_id=account.id, arch="x86_64", is_public=True,
                  source="upload", format="raw", virtual_size=512, file_size=512,
                  sha256="", file_name="x.raw")
        )  # fmt: skip
        session.add(
            Network(id="nw-bench000", name="lo", cidr="127.0.0.0/24", gateway="127.0.0.1",
                    dhcp_start="127.0.0.1", dhcp_end="127.0.0.254", domain="vdc.bench",
                    bridge="vdcbench0", vni=4000)
        )  # fmt: skip
        session.add(  # where the busy-API part's launches get their addresses
            Network(id="nw-bench001", name="launches", cidr="10.200.0.0/16",
                    gateway="10.200.0.1", dhcp_start="10.200.0.2", dhcp_end="10.200.255.254",
                    bridge="vdcbench1", vni=4001, is_default=True)
        )  # fmt: skip
        session.flush()
        for n in (1, 2):
            instance_id = f"i-bench00{n}"
            session.add(
                Instance(id=instance_id, account_id=account.id, hostname=f"bench{n}",
                         image_id="wmi-bench000", cpu_cores=1, memory_size=64,
                         state=InstanceState.running, user_data=USER_DATA)
            )  # fmt: skip
            session.flush()
            session.add(
                NetworkInterface(id=new_id("interface"), instance_id=instance_id,
                                 network_id="nw-bench000", mac_address=f"52:54:00:00:be:0{n}",
                                 ip_address=f"127.0.0.{n}",
                                 ip_number=address_number(f"127.0.0.{n}"))
            )  # fmt: skip
        session.commit()
    engine.dispose()
    return key


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


def wrk(url: str, connections: int, seconds: float) -> tuple[float, float, float]:
    """(requests per second, p50 ms, p99 ms)."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def percentile(label: str) -> float:
        value, unit = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return rps, percentile("50"), percentile("99")


def one_at_a_time(port: int, source: str, seconds: float) -> list[float]:
    """A guest asking one question at a time (keep-alive), from `source`: latencies, ms."""
    request = b"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n"
    latencies: list[float] = []
    with socket.create_connection(("127.0.0.1", port), source_address=(source, 0)) as conn:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.perf_counter()
            conn.sendall(request)
            answer = b""
            while not answer.endswith(b"i-bench002"):
                chunk = conn.recv(4096)
                if not chunk:
                    raise RuntimeError(f"the connection closed after {answer!r}")
                answer += chunk
            latencies.append((time.perf_counter() - started) * 1000)
            # About 100 questions a second: within one instance's fair share (VDC_METADATA_RATE
            # 200/s past a burst of 1000), which a faster pace runs out of in a 5 s figure.
            time.sleep(0.01)
    return latencies


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def launches(api: str, key: str, stop: threading.Event) -> None:
    """Launch after launch to a test:// host, from 8 threads: the API and its worker busy."""
    body = {"image_id": "wmi-bench000", "cpu_cores": 1, "memory_size": 16}

    def loop() -> None:
        with httpx.Client(base_url=api, headers={"Authorization": f"Bearer {key}"}) as client:
            while not stop.is_set():
                client.post("/api/v1/instances", json=body, timeout=30)

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(8)]
    for thread in threads:
        thread.start()
    stop.wait()
    for thread in threads:
        thread.join(30)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--quick", action="store_true", help="1 s per figure: does it run?")
    parser.add_argument("--port", type=int, default=18881)
    parser.add_argument(
        "--parts",
        default="throughput,busy,fairness",
        help="which of the three to run (comma-separated; all by default)",
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    seconds = 1.0 if args.quick else args.seconds
    ensure_tools()
    md_port, nginx_port, api_port = args.port, args.port + 1, args.port + 2
    with tempfile.TemporaryDirectory(prefix="vdc-bench-md-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # nginx's worker runs as www-data and reads the files below
        (root / "node.xml").write_text(NODE)
        env = {k: v for k, v in os.environ.items() if not k.startswith("VDC_")} | {
            "VDC_DATA_DIR": str(root / "data"),
            "VDC_API_BIND": f"127.0.0.1:{api_port}",
            "VDC_METADATA_BIND": f"127.0.0.1:{md_port}",
            "VDC_SYNC_INTERVAL": "3600",
            "VDC_ALLOW_TEST_HOSTS": "true",
            "VDC_QUOTA_INSTANCES": "-1",
            "VDC_QUOTA_CORES": "-1",
            "VDC_QUOTA_MEMORY_MIB": "-1",
        }
        subprocess.run([str(BIN / "vdc"), "migrate"], env=env, check=True, capture_output=True)
        key = seed(env, root)
        node = f"test://{root / 'node.xml'}"
        manage = [str(BIN / "vdc-manage"), "host", "add", "bench", "--uri", node]
        subprocess.run(manage, env=env, check=True, capture_output=True)
        (root / "www/latest/meta-data").mkdir(parents=True)
        (root / "tmp").mkdir()
        (root / "www/latest/meta-data/instance-id").write_text("i-bench001")
        (root / "www/latest/user-data").write_bytes(USER_DATA)
        (root / "nginx.conf").write_text(nginx_config(root, nginx_port))
        nginx = subprocess.Popen(
            ["nginx", "-c", str(root / "nginx.conf"), "-p", str(root)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            results = []
            lifted = env | {
                "VDC_METADATA_MAX_CONNECTIONS_PER_SOURCE": "1024",
                "VDC_METADATA_RATE": "0",
            }
            with served(lifted, md_port, root):
                if "throughput" in parts:
                    results += throughput(md_port, nginx_port, seconds)
                if "busy" in parts:
                    results += busy_api(md_port, f"http://127.0.0.1:{api_port}", key, seconds)
            if "fairness" in parts:
                with served(env, md_port, root):
                    results += fairness(md_port, seconds)
        finally:
            nginx.send_signal(signal.SIGTERM)  # only what this benchmark started
            nginx.wait(timeout=30)
    print()
    for line in results:
        print(line)
    print("aims: throughput >= 0.5 x nginx; p99 < 10 ms at 64 connections, for another guest")
    print("while one hammers, and while the API is busy")


class served:
    """`vdc serve` for the duration of a `with`, waiting until the metadata answers."""

    def __init__(self, env: dict[str, str], port: int, root: Path) -> None:
        self.env, self.port, self.root = env, port, root
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> None:
        log = (self.root / "serve.log").open("a")
        self.process = subprocess.Popen(
            [str(BIN / "vdc"), "serve"], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        url = f"http://127.0.0.1:{self.port}{PATHS[0]}"
        for _ in range(300):
            try:
                if httpx.get(url, timeout=1).text == "i-bench001":
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"vdc serve did not answer: {(self.root / 'serve.log').read_text()}")

    def __exit__(self, *_: object) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)  # the process this benchmark started
        self.process.wait(timeout=30)


def throughput(md_port: int, nginx_port: int, seconds: float) -> list[str]:
    assert httpx.get(f"http://127.0.0.1:{md_port}{PATHS[1]}").content == USER_DATA
    columns = ("conns", "vdc req/s", "nginx req/s", "ratio", "vdc p50", "vdc p99", "nginx p99")
    print(f"{'path':32} " + " ".join(f"{c:>11}" for c in columns))
    results = []
    for path in PATHS:
        for connections in (1, 16, 64):
            vdc = wrk(f"http://127.0.0.1:{md_port}{path}", connections, seconds)
            nginx = wrk(f"http://127.0.0.1:{nginx_port}{path}", connections, seconds)
            cells = (
                f"{connections}", f"{vdc[0]:.0f}", f"{nginx[0]:.0f}", f"{vdc[0] / nginx[0]:.2f}",
                f"{vdc[1]:.2f}ms", f"{vdc[2]:.2f}ms", f"{nginx[2]:.2f}ms",
            )  # fmt: skip
            print(f"{path:32} " + " ".join(f"{c:>11}" for c in cells))
            if connections == 64:
                results.append(
                    f"throughput {path} at 64: {vdc[0] / nginx[0]:.2f} x nginx, p99"
                    f" {vdc[2]:.2f} ms  {verdict(vdc[0] / nginx[0] >= 0.5 and vdc[2] < 10)}"
                )
    return results


def fairness(md_port: int, seconds: float) -> list[str]:
    alone = one_at_a_time(md_port, "127.0.0.2", seconds)
    command = ["wrk", "-t1", "-c64", f"-d{max(1, round(seconds)) + 1}s"]
    command.append(f"http://127.0.0.1:{md_port}{PATHS[0]}")
    hammer = threading.Thread(
        target=lambda: subprocess.run(command, capture_output=True, check=False)
    )
    hammer.start()
    time.sleep(0.5)
    shared = one_at_a_time(md_port, "127.0.0.2", seconds)
    hammer.join()
    print(
        f"fairness: another guest's p99 {p99(alone):.2f} ms alone, {p99(shared):.2f} ms while "
        f"one guest hammers with 64 connections ({len(shared)} questions)"
    )
    return [f"fairness: p99 {p99(shared):.2f} ms while hammered  {verdict(p99(shared) < 10)}"]


def busy_api(md_port: int, api: str, key: str, seconds: float) -> list[str]:
    idle = wrk(f"http://127.0.0.1:{md_port}{PATHS[0]}", 64, seconds)
    stop = threading.Event()
    load = threading.Thread(target=launches, args=(api, key, stop))
    load.start()
    time.sleep(1)
    busy = wrk(f"http://127.0.0.1:{md_port}{PATHS[0]}", 64, seconds)
    stop.set()
    load.join(60)
    count = httpx.get(
        f"{api}/api/v1/instances", params={"limit": 1}, headers={"Authorization": f"Bearer {key}"}
    ).json()["total"]
    print(
        f"busy API: metadata p99 {idle[2]:.2f} ms with the API idle, {busy[2]:.2f} ms during "
        f"{count - 2} launches (64 connections)"
    )
    return [f"busy API: metadata p99 {busy[2]:.2f} ms during launches  {verdict(busy[2] < 10)}"]


if __name__ == "__main__":
    main()

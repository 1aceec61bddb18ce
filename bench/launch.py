"""Launch throughput: N launches through vdc's HTTP API against a libvirt test:// host,
next to N plain libvirt createXML calls of an equivalent domain in the same run.

    .venv/bin/python bench/launch.py [--count 500] [--concurrency 8] [--workers 4]

Prints launches per second, the API's overhead per launch (request accepted -> domain
defined and started, from the instance's created_at/launched_at) and the ratio of vdc's
wall time to bare libvirt's. Everything runs on loopback in temporary folders.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx
import libvirt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hypervisor import designer  # noqa: E402
from hypervisor.specs import DiskSpec, DomainSpec  # noqa: E402

BIN = Path(sys.executable).parent
NODE = (
    "<node><cpu><mhz>2000</mhz><model>x86_64</model><active>4096</active><nodes>1</nodes>"
    "<sockets>1</sockets><cores>4096</cores><threads>1</threads></cpu>"
    "<memory>4294967296</memory></node>"
)


def bare_libvirt(node_file: Path, count: int) -> float:
    """Seconds for `count` createXML calls (define + start) of vdc's own domain XML."""
    connection = libvirt.open(f"test://{node_file}")
    documents = [
        designer.domain(
            DomainSpec(
                name=f"bare-{n}",
                virt_type="test",
                arch="x86_64",
                vcpus=1,
                memory_mib=128,
                instance_id=f"bare-{n}",
                account_id="a-bench",
                disks=(DiskSpec(path=f"/tmp/bare-{n}.qcow2"),),
            )
        ).to_xml()
        for n in range(count)
    ]
    started = time.perf_counter()
    for document in documents:
        connection.createXML(document, 0)
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4, help="vdc job worker threads")
    parser.add_argument("--port", type=int, default=18771)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="vdc-bench-") as tmp:
        base = Path(tmp)
        node = base / "node.xml"
        node.write_text(NODE)
        env = {k: v for k, v in os.environ.items() if not k.startswith("VDC_")} | {
            "VDC_DATA_DIR": str(base / "data"),
            "VDC_ALLOW_TEST_HOSTS": "true",  # test:// hosts
            "VDC_API_BIND": f"127.0.0.1:{args.port}",
            "VDC_METADATA_BIND": f"127.0.0.1:{args.port + 1}",
            "VDC_WORKERS": str(args.workers),
            "VDC_SYNC_INTERVAL": "3600",
            # Hundreds of launches by one account: no quota in the way.
            "VDC_QUOTA_INSTANCES": "-1",
            "VDC_QUOTA_CORES": "-1",
            "VDC_QUOTA_MEMORY_MIB": "-1",
            "VDC_QUOTA_VOLUME_GIB": "-1",
        }
        manage = [str(BIN / "vdc-manage")]
        subprocess.run([str(BIN / "vdc"), "migrate"], env=env, check=True, capture_output=True)
        subprocess.run(
            [*manage, "host", "add", "bench", "--uri", f"test://{node}"],
            env=env,
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [*manage, "network", "add", "bench", "--cidr", "10.200.0.0/16", "--default"],
            env=env,
            check=True,
            capture_output=True,
        )
        (base / "data" / "import").mkdir(parents=True, exist_ok=True)
        disk = base / "data" / "import" / "bench.qcow2"
        subprocess.run(
            ["qemu-img", "create", "-f", "qcow2", str(disk), "64M"], check=True, capture_output=True
        )
        image = subprocess.run(
            [*manage, "image", "add", "local", str(disk), "--arch", "x86_64", "--is-public"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        log = (base / "serve.log").open("w")
        server = subprocess.Popen(
            [str(BIN / "vdc"), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            url = f"http://127.0.0.1:{args.port}"
            for _ in range(100):
                try:
                    httpx.get(f"{url}/healthz", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            key = (base / "data" / "admin.key").read_text().strip()
            client = httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60
            )
            body = {"image_id": image, "instance_type": "nano"}

            started = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as pool:
                answers = list(
                    pool.map(
                        lambda _: client.post("/api/v1/instances", json=body), range(args.count)
                    )
                )
            accepted = time.perf_counter() - started
            assert all(a.status_code == 202 for a in answers), {a.status_code for a in answers}
            while True:
                page = client.get(
                    "/api/v1/instances", params={"state": "running", "limit": 1}
                ).json()
                errors = client.get(
                    "/api/v1/instances", params={"state": "error", "limit": 1}
                ).json()
                if page["total"] + errors["total"] >= args.count:
                    break
                time.sleep(0.05)
            vdc_seconds = time.perf_counter() - started
            rows = []
            for offset in range(0, args.count, 1000):
                rows += client.get(
                    "/api/v1/instances", params={"limit": 1000, "offset": offset}
                ).json()["items"]
        finally:
            server.terminate()
            server.wait(timeout=30)

    overhead = [
        (
            datetime.fromisoformat(r["launched_at"]) - datetime.fromisoformat(r["created_at"])
        ).total_seconds()
        for r in rows
        if r["launched_at"]
    ]
    with tempfile.TemporaryDirectory(prefix="vdc-bench-bare-") as tmp:
        fresh = Path(tmp) / "node.xml"
        fresh.write_text(NODE)
        bare_seconds = bare_libvirt(fresh, args.count)
    n = args.count
    median_ms = statistics.median(overhead) * 1000
    p95_ms = statistics.quantiles(overhead, n=20)[18] * 1000
    lines = [
        f"launches: {n} (concurrency {args.concurrency}, {args.workers} job workers, SQLite)",
        f"errors: {errors['total']}",
        f"vdc: all {n} running after {vdc_seconds:.2f}s -> {n / vdc_seconds:.1f} launches/s",
        f"     API accepted all in {accepted:.2f}s ({accepted / n * 1000:.1f} ms per request)",
        f"     accepted -> domain started: median {median_ms:.1f} ms, p95 {p95_ms:.1f} ms",
        f"bare libvirt createXML x{n}: {bare_seconds:.3f}s -> {n / bare_seconds:.0f} /s",
        f"ratio (vdc wall time / bare libvirt wall time): {vdc_seconds / bare_seconds:.1f}x"
        f"  (aim: <= 2x)  {'PASS' if vdc_seconds <= 2 * bare_seconds else 'MISS'}",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()

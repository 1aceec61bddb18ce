"""Launch throughput: N launches through vdc's HTTP API against a libvirt test:// host,
next to N plain libvirt createXML calls of an equivalent domain in the same run.

    .venv/bin/python bench/launch.py [--count 500] [--concurrency 8] [--workers 4]
                                     [--database sqlite|postgresql|both] [--quick]
                                     [--profile FILE [--gil]]

Prints launches per second (all N `running`), the accepted request's latency (the POST's
answer, p50 and p95, as the clients saw it), accepted -> domain started (the instance's
created_at -> launched_at), the server's CPU time per launch, and two references: bare
libvirt's rate, and the accepted latency of the least a launch's POST does on the same
stack (bench/accept_baseline.py, on the same database, with the same client); then each
aim on a line of its own that ends in PASS or MISS (as `make bench` gathers them). It runs
on SQLite, then PostgreSQL (`--database` picks one): a fresh database of the test
PostgreSQL (VDC_TEST_POSTGRES_URL, else what scripts/start-test-postgres.sh starts),
dropped afterwards. `--quick` is 40 launches, a
few seconds: CI runs it (tests/integration/test_bench_launch.py) so a benchmark that
breaks fails the build. `--profile FILE` samples the server and its child processes (the
job process, the metadata process) with py-spy while it launches (collapsed stacks,
FILE-sqlite.txt and FILE-postgresql.txt when both run: summarize them with
scripts/pyspy_summary.py); with --gil only the thread holding the GIL, i.e. the CPU.

Exits non-zero when a launch was refused or ended in `error`: the figures of a broken
run mean nothing. A MISS is not a failure of the run.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import httpx
import libvirt
import sqlalchemy as sa
from sqlalchemy.engine import make_url

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
AIM_RATE = 150.0  # launches per second, all `running`
AIM_P50_MS = 10.0  # accepted request, median, at concurrency 8
QUICK_COUNT = 40


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


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database on the test PostgreSQL (the role may CREATE DATABASE), dropped after."""
    server = (
        os.environ.get("VDC_TEST_POSTGRES_URL")
        or subprocess.run(
            ["bash", str(ROOT / "scripts" / "start-test-postgres.sh")],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    name = f"vdc_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def database(kind: str, data_dir: Path) -> Iterator[str]:
    if kind == "postgresql":
        with postgres_database() as url:
            yield url
    else:
        yield f"sqlite:///{data_dir / 'vdc.sqlite3'}"


def prepare(env: dict[str, str], base: Path) -> str:
    """Migrates, adds the test:// host, the default network and a public image; its id."""
    manage = [str(BIN / "vdc-manage")]

    def run(*command: str) -> str:
        return subprocess.run(
            command, env=env, check=True, capture_output=True, text=True
        ).stdout.strip()

    run(str(BIN / "vdc"), "migrate")
    run(*manage, "host", "add", "bench", "--uri", f"test://{base / 'node.xml'}")
    run(*manage, "network", "add", "bench", "--cidr", "10.200.0.0/16", "--default")
    (base / "data" / "import").mkdir(parents=True, exist_ok=True)
    disk = base / "data" / "import" / "bench.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-f", "qcow2", str(disk), "64M"], check=True, capture_output=True
    )
    return run(*manage, "image", "add", "local", str(disk), "--arch", "x86_64", "--is-public")


@contextmanager
def profiling(pid: int, output: Path | None, gil: bool) -> Iterator[None]:
    """py-spy samples the server while the block runs: every thread, waiting ones too (where
    the time goes), or with `gil` only the thread holding the GIL (where the CPU goes)."""
    if output is None:
        yield
        return
    command = [str(BIN / "py-spy"), "record", "--pid", str(pid), "--format", "raw"]
    command += ["--subprocesses"]  # the job process too (and the metadata process)
    command += ["--gil"] if gil else []
    spy = subprocess.Popen(
        [*command, "--rate", "250", "--output", str(output), "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # attached
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
        spy.wait(timeout=60)


def launch_all(client: httpx.Client, body: dict[str, str], count: int, concurrency: int):  # type: ignore[no-untyped-def]
    """Every POST's (status, seconds, reason if refused)."""

    def one(_: int) -> tuple[int, float, str]:
        started = time.perf_counter()
        answer = client.post("/api/v1/instances", json=body)
        elapsed = time.perf_counter() - started
        return answer.status_code, elapsed, "" if answer.status_code == 202 else answer.text

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, range(count)))


def wait_answering(base: str) -> None:
    """Until the server at `base` answers /healthz (20 s at most)."""
    for _ in range(200):
        try:
            httpx.get(f"{base}/healthz", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)


def baseline_latencies(url: str, port: int, count: int, concurrency: int) -> list[float]:
    """The accepted request's latencies (seconds, sorted) of bench/accept_baseline.py: the
    least a launch's POST does on vdc's stack, on the same database, with the same client."""
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "accept_baseline.py"), url, str(port)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_answering(base)
        client = httpx.Client(
            base_url=base,
            headers={"Authorization": "Bearer bench-baseline-key"},
            timeout=120,
            limits=httpx.Limits(max_connections=concurrency + 2),
        )
        body = {"image_id": "wmi-bench", "instance_type": "nano"}
        client.post("/api/v1/instances", json=body)  # the first call builds the route
        answers = launch_all(client, body, count, concurrency)
        assert all(a[0] == 202 for a in answers), answers[:3]
        return sorted(a[1] for a in answers)
    finally:
        server.terminate()  # the process this benchmark started
        server.wait(timeout=30)


def wait_settled(engine: sa.Engine, count: int) -> tuple[int, int]:
    """Until every instance is running or in error; (running, error). Read from the database
    directly, so the watching costs the server nothing."""
    while True:
        with engine.connect() as connection:
            states = dict(
                connection.execute(
                    sa.text("SELECT state, count(*) FROM instances GROUP BY state")
                ).all()
            )
        running, failed = states.get("running", 0), states.get("error", 0)
        if running + failed >= count:
            return running, failed
        time.sleep(0.01)


def wait_drained(engine: sa.Engine) -> None:
    """Until no job is queued or running (the filters jobs of the other group members)."""
    while True:
        with engine.connect() as connection:
            left = connection.execute(
                sa.text("SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')")
            ).scalar_one()
        if not left:
            return
        time.sleep(0.01)


def jobs_by_kind(engine: sa.Engine) -> str:
    """How many jobs of each kind the run made ("launch 500, filters 12"): work queued for
    other instances (their filters) is part of what a launch costs."""
    with engine.connect() as connection:
        counted = connection.execute(
            sa.text("SELECT kind, count(*) FROM jobs GROUP BY kind ORDER BY count(*) DESC")
        ).all()
    return ", ".join(f"{kind} {n}" for kind, n in counted)


def children_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU time so far of the process's children by their module (`python -m MODULE`:
    app.job_process, metadata.server)."""
    seconds: dict[str, float] = {}
    threads = Path(f"/proc/{pid}/task").iterdir()  # a child started again is a thread's
    for child in [c for t in threads for c in (t / "children").read_text().split()]:
        argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        module = argv[argv.index(b"-m") + 1].decode() if b"-m" in argv else "other"
        seconds[module] = seconds.get(module, 0.0) + cpu_seconds(int(child))
    return seconds


def cpu_seconds(pid: int) -> float:
    """The process's user + system CPU time so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4, help="vdc job worker threads")
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgresql", "both"),
        default="both",
        help="both (the default): SQLite, then PostgreSQL",
    )
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_COUNT} launches (CI)")
    parser.add_argument(
        "--port", type=int, default=18771, help="vdc; +1 its metadata listener, +2 the baseline"
    )
    parser.add_argument("--profile", type=Path, help="py-spy's collapsed stacks go here")
    parser.add_argument("--gil", action="store_true", help="profile the GIL's holder only")
    args = parser.parse_args()
    kinds = ("sqlite", "postgresql") if args.database == "both" else (args.database,)
    status = 0
    for kind in kinds:
        profile = args.profile
        if profile is not None and len(kinds) > 1:
            profile = profile.with_name(f"{profile.stem}-{kind}{profile.suffix}")
        status |= run(args, kind, profile)
    return status


def run(args: argparse.Namespace, kind: str, profile: Path | None) -> int:
    """One benchmark on one database; 1 when it broke (a launch refused or failed)."""
    count = QUICK_COUNT if args.quick else args.count
    with tempfile.TemporaryDirectory(prefix="vdc-bench-") as tmp:
        base = Path(tmp)
        (base / "node.xml").write_text(NODE)
        with database(kind, base / "data") as url:
            env = {k: v for k, v in os.environ.items() if not k.startswith("VDC_")} | {
                "VDC_DATA_DIR": str(base / "data"),
                "VDC_DATABASE_URL": url,
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
            image = prepare(env, base)
            log_path = base / "serve.log"
            with log_path.open("w") as log:
                server = subprocess.Popen(
                    [str(BIN / "vdc"), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
                )
            try:
                api = f"http://127.0.0.1:{args.port}"
                wait_answering(api)
                key = (base / "data" / "admin.key").read_text().strip()
                limits = httpx.Limits(max_connections=args.concurrency + 2)
                client = httpx.Client(
                    base_url=api,
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=120,
                    limits=limits,
                )
                body = {"image_id": image, "instance_type": "nano"}
                client.get("/api/v1/instances")  # FastAPI builds its routes at the first call
                watch = sa.create_engine(url)
                with profiling(server.pid, profile, args.gil):
                    cpu_before = cpu_seconds(server.pid)
                    others_before = children_cpu_seconds(server.pid)
                    client_before = time.process_time()
                    started = time.perf_counter()
                    answers = launch_all(client, body, count, args.concurrency)
                    accepted = time.perf_counter() - started
                    refused = [a for a in answers if a[0] != 202]
                    running, failed = wait_settled(watch, count - len(refused))
                    vdc_seconds = time.perf_counter() - started
                    wait_drained(watch)
                    drained = time.perf_counter() - started
                    cpu = cpu_seconds(server.pid) - cpu_before
                    others_after = children_cpu_seconds(server.pid)
                    others = {
                        module: spent - others_before.get(module, 0.0)
                        for module, spent in others_after.items()
                    }
                    client_cpu = time.process_time() - client_before
                job_kinds = jobs_by_kind(watch)
                rows = []
                for offset in range(0, count, 1000):
                    rows += client.get(
                        "/api/v1/instances", params={"limit": 1000, "offset": offset}
                    ).json()["items"]
                watch.dispose()
            finally:
                server.terminate()
                server.wait(timeout=60)
                serve_log = log_path.read_text(errors="replace")
            bare_accept = baseline_latencies(url, args.port + 2, count, args.concurrency)

    overhead = sorted(
        (
            datetime.fromisoformat(r["launched_at"]) - datetime.fromisoformat(r["created_at"])
        ).total_seconds()
        for r in rows
        if r["launched_at"]
    )
    latencies = sorted(a[1] for a in answers)
    with tempfile.TemporaryDirectory(prefix="vdc-bench-bare-") as tmp:
        fresh = Path(tmp) / "node.xml"
        fresh.write_text(NODE)
        bare_seconds = bare_libvirt(fresh, count)

    def ms(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))] * 1000 if values else 0.0

    rate = running / vdc_seconds
    p50 = statistics.median(latencies) * 1000
    bare_p50 = statistics.median(bare_accept) * 1000
    name = f"launch/{kind}"
    print(
        "\n".join(
            [
                f"{name}: {count} launches (concurrency {args.concurrency}, "
                f"{args.workers} job workers, {kind}, test:// host)",
                f"  refused: {len(refused)}, ended in error: {failed}",
                f"  all running after {vdc_seconds:.2f}s -> {rate:.1f} launches/s; "
                f"every job done after {drained:.2f}s (jobs: {job_kinds})",
                f"  accepted request: p50 {p50:.1f} ms, p95 {ms(latencies, 0.95):.1f} ms "
                f"(all {count} accepted in {accepted:.2f}s)",
                f"  bare FastAPI accept (bench/accept_baseline.py: validate, insert one row): "
                f"p50 {bare_p50:.1f} ms, p95 {ms(bare_accept, 0.95):.1f} ms; vdc's p50 is "
                f"{p50 / bare_p50:.1f}x it (reference, no aim)",
                f"  accepted -> domain started: median {ms(overhead, 0.5):.1f} ms, "
                f"p95 {ms(overhead, 0.95):.1f} ms",
                f"  vdc serve's CPU (user + system) per launch: API {cpu / count * 1000:.1f} ms, "
                f"job process {others.get('app.job_process', 0.0) / count * 1000:.1f} ms, "
                f"metadata process {others.get('metadata.server', 0.0) / count * 1000:.1f} ms; "
                f"this client {client_cpu / count * 1000:.1f} ms "
                f"(the machine: {os.cpu_count()} CPUs)",
                f"  bare libvirt createXML x{count}: {bare_seconds:.3f}s -> "
                f"{count / bare_seconds:.0f} /s; vdc's wall time is "
                f"{vdc_seconds / bare_seconds:.0f}x bare libvirt's (reference, no aim)",
                f"{name}: {rate:.1f} launches/s to running (aim >= {AIM_RATE:g})  "
                f"{verdict(rate >= AIM_RATE)}",
                f"{name}: accepted request p50 {p50:.1f} ms (aim < {AIM_P50_MS:g} ms)  "
                f"{verdict(p50 < AIM_P50_MS)}",
            ]
        )
    )
    broken = refused or failed
    if broken:
        for status, _, reason in refused[:5]:
            print(f"  refused {status}: {reason[:300]}", file=sys.stderr)
        reasons = {r["state_reason"] for r in rows if r["state"] == "error"}
        for reason in sorted(reasons)[:5]:
            print(f"  error: {reason[:300]}", file=sys.stderr)
        print(serve_log[-4000:], file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())

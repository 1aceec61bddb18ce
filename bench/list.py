"""Lists at scale: the instance list with 10,000 instances in 20 accounts, on SQLite and
PostgreSQL, through the API, the web UI and vdc-manage.

    .venv/bin/python bench/list.py [--count 10000] [--accounts 20] [--requests 400]
                                   [--rounds 3] [--seed batch|services] [--quick]
                                   [--databases sqlite,postgres]

Seeds a fresh database (bench/list_seed.py says how), serves it with `vdc serve` (no job
worker) and, next to it, a bare ASGI handler running the same queries with SQLAlchemy core
(bench/list_baseline.py). Then, per database:
- `GET /api/v1/instances?limit=100`, plain, `state=running` and `sort=-created_at`, with an
  admin key (all instances) and a user key (one account's): p50 < 20 ms, p99 < 50 ms;
- the web UI's instances page with a signed-in session cookie: p50 < 100 ms;
- `vdc-manage instance list` as a new process: under 1 s.
Each figure is printed next to its aim and the baseline measured in the same run, with
PASS or MISS. Requests go one at a time over one keep-alive connection; with --rounds, each
case is measured that many times (interleaved) and the round with the best p50 is kept.
PostgreSQL runs when VDC_TEST_POSTGRES_URL is set (`make bench` starts the test server as
`make test` does); the benchmark makes and drops a database of its own there.

--quick (500 instances, 20 requests per case, one round) is what CI runs to check that the
benchmark still works (tests/integration/test_bench_list_runs.py); its figures mean little.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from list_seed import Seeded, fast_writes, seed, settings_for  # noqa: E402
from sqlmodel import Session  # noqa: E402

from app.db import make_engine  # noqa: E402
from app.migrations import upgrade  # noqa: E402
from app.web import session as web_session  # noqa: E402

BIN = Path(sys.executable).parent
API_P50, API_P99, WEB_P50, CLI_SECONDS = 0.020, 0.050, 0.100, 1.0
WEB_SECRET = "bench-list-web-secret"  # noqa: S105 - a throwaway server's
CASES = (
    ("", {"limit": "100"}),
    ("state=running", {"limit": "100", "state": "running"}),
    ("sort=-created_at", {"limit": "100", "sort": "-created_at"}),
)
CLI_BASELINE = """
import sys, sqlalchemy as sa
engine = sa.create_engine(sys.argv[1])
with engine.connect() as c:
    for row in c.execute(sa.text(
        "SELECT i.id, i.account_id, i.state, i.host_node_id, n.ip_address, n.mac_address,"
        " i.hostname FROM instances i LEFT JOIN network_interfaces n ON n.instance_id = i.id"
        " AND n.device_index = 0 ORDER BY i.created_at, i.id LIMIT :n"), {"n": int(sys.argv[2])}):
        print("  ".join(str(v) for v in row))
"""


@dataclass
class Figure:
    name: str
    p50: float
    p99: float | None
    aim_p50: float
    aim_p99: float | None
    baseline: float

    @property
    def passed(self) -> bool:
        return self.p50 < self.aim_p50 and (self.aim_p99 is None or (self.p99 or 0) < self.aim_p99)

    def line(self) -> str:
        p99 = f"{_ms(self.p99):>9}" if self.p99 is not None else f"{'':>9}"
        aim = f"< {_ms(self.aim_p50)}" + (f" / < {_ms(self.aim_p99)}" if self.aim_p99 else "")
        ratio = self.p50 / self.baseline if self.baseline else float("inf")
        verdict = "PASS" if self.passed else "MISS"
        return (
            f"{self.name:<46} {_ms(self.p50):>9} {p99} {aim:>19} {_ms(self.baseline):>10}"
            f" {ratio:>6.1f}x  {verdict}"
        )


HEADER = (
    f"{'case':<46} {'p50':>9} {'p99':>9} {'aim p50 / p99':>19} {'baseline':>10} {'ratio':>7}"
    "  verdict"
)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}ms"


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def timings(client: httpx.Client, path: str, params: dict[str, str], count: int) -> list[float]:
    for _ in range(min(10, count)):  # warm: connections, caches, compiled statements
        client.get(path, params=params).raise_for_status()
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        response = client.get(path, params=params)
        samples.append(time.perf_counter() - started)
        response.raise_for_status()
    return samples


def best_round(rounds: list[list[float]]) -> tuple[float, float]:
    """(p50, p99) of the round with the lowest p50: the machine is shared and noisy."""
    chosen = min(rounds, key=lambda r: statistics.median(r))
    return statistics.median(chosen), percentile(chosen, 0.99)


@contextmanager
def served(command: list[str], env: dict[str, str], url: str, log: Path) -> Iterator[None]:
    with log.open("w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            for _ in range(300):
                try:
                    httpx.get(url, timeout=1)
                    break
                except httpx.TransportError:
                    if process.poll() is not None:
                        raise SystemExit(
                            f"{command[0]} exited: {log.read_text()[-2000:]}"
                        ) from None
                    time.sleep(0.1)
            yield
        finally:
            process.terminate()
            process.wait(30)


@contextmanager
def database(kind: str, base: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{base / 'vdc.sqlite3'}"
        return
    server = os.environ["VDC_TEST_POSTGRES_URL"]
    name = f"vdc_bench_list_{os.getpid()}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run(kind: str, args: argparse.Namespace) -> list[Figure]:
    with (
        tempfile.TemporaryDirectory(prefix="vdc-bench-list-") as tmp,
        database(kind, Path(tmp)) as url,
    ):
        base = Path(tmp)
        data = base / "data"
        settings = settings_for(data, url, WEB_SECRET)
        upgrade(url)
        engine = make_engine(url)
        fast_writes(engine)
        seeded = seed(engine, settings, args.count, args.accounts, args.seed)
        if kind == "postgres":  # what autovacuum does soon after a bulk load
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.execute(sa.text("VACUUM ANALYZE"))
        with Session(engine) as session:
            user_id, user_key = next(iter(seeded.user_keys.items()))
            admin_cookie = web_session.sign_in(session, settings, seeded.admin_key)
            user_cookie = web_session.sign_in(session, settings, user_key)
            session.commit()
        engine.dispose()
        title = {"sqlite": "SQLite", "postgres": "PostgreSQL"}[kind]
        print(
            f"\n== {title}: {seeded.instances} instances in {args.accounts} accounts"
            f" (seeded in {seeded.seconds:.1f}s, {args.seed}) ==",
            flush=True,
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("VDC_")} | {
            "VDC_DATA_DIR": str(data),
            "VDC_DATABASE_URL": url,
            "VDC_API_BIND": f"127.0.0.1:{args.port}",
            "VDC_METADATA_BIND": f"127.0.0.1:{args.port + 1}",
            "VDC_WORKERS": "0",
            "VDC_SYNC_INTERVAL": "3600",
            "VDC_ALLOW_TEST_HOSTS": "true",
            "VDC_WEB_SECRET": WEB_SECRET,
        }
        vdc_url = f"http://127.0.0.1:{args.port}"
        bare_url = f"http://127.0.0.1:{args.port + 2}"
        vdc = [str(BIN / "vdc"), "serve"]
        bare = [sys.executable, str(ROOT / "bench" / "list_baseline.py"), url, str(args.port + 2)]
        with (
            served(vdc, env, f"{vdc_url}/healthz", base / "serve.log"),
            served(bare, env, bare_url, base / "baseline.log"),
            httpx.Client(base_url=vdc_url, timeout=60) as client,
            httpx.Client(base_url=bare_url, timeout=60) as baseline,
        ):
            figures = http_figures(client, baseline, seeded, user_id, args)
            figures += web_figures(client, baseline, admin_cookie, user_cookie, user_id, args)
        figures += cli_figures(env, url, args)
    return figures


def http_figures(
    client: httpx.Client,
    baseline: httpx.Client,
    seeded: Seeded,
    user_id: str,
    args: argparse.Namespace,
) -> list[Figure]:
    print(HEADER, flush=True)
    keys = {"admin": seeded.admin_key, "user": seeded.user_keys[user_id]}
    figures = []
    for who, key in keys.items():
        headers = {"Authorization": f"Bearer {key}"}
        own = {} if who == "admin" else {"account_id": user_id}
        for label, params in CASES:
            ours = [_timed_with(client, headers, params, args.requests) for _ in range(args.rounds)]
            theirs = [
                timings(baseline, "/", params | own, args.requests) for _ in range(args.rounds)
            ]
            p50, p99 = best_round(ours)
            name = f"API {who} ?limit=100" + (f"&{label}" if label else "")
            figure = Figure(name, p50, p99, API_P50, API_P99, best_round(theirs)[0])
            print(figure.line(), flush=True)
            figures.append(figure)
    return figures


def _timed_with(
    client: httpx.Client, headers: dict[str, str], params: dict[str, str], count: int
) -> list[float]:
    client.headers.update(headers)
    try:
        return timings(client, "/api/v1/instances", params, count)
    finally:
        for name in headers:
            client.headers.pop(name)


def web_figures(
    client: httpx.Client,
    baseline: httpx.Client,
    admin_cookie: str,
    user_cookie: str,
    user_id: str,
    args: argparse.Namespace,
) -> list[Figure]:
    figures = []
    for who, cookie in (("admin", admin_cookie), ("user", user_cookie)):
        own = {} if who == "admin" else {"account_id": user_id}
        client.cookies.set(web_session.COOKIE, cookie)
        ours = [timings(client, "/instances", {}, args.requests) for _ in range(args.rounds)]
        client.cookies.clear()
        params = {"limit": "100", "sort": "-created_at"} | own
        theirs = [timings(baseline, "/", params, args.requests) for _ in range(args.rounds)]
        p50, p99 = best_round(ours)
        figure = Figure(f"web /instances ({who})", p50, p99, WEB_P50, None, best_round(theirs)[0])
        print(figure.line(), flush=True)
        figures.append(figure)
    return figures


def cli_figures(env: dict[str, str], url: str, args: argparse.Namespace) -> list[Figure]:
    runs = 1 if args.quick else 5
    figures = []
    for label, extra, rows in (("", [], 100), (" --all", ["--all"], args.count)):
        command = [str(BIN / "vdc-manage"), "instance", "list", *extra]
        ours = [_process_seconds(command, env) for _ in range(runs)]
        theirs = [
            _process_seconds([sys.executable, "-c", CLI_BASELINE, url, str(rows)], env)
            for _ in range(runs)
        ]
        name = f"vdc-manage instance list{label}"
        figure = Figure(name, statistics.median(ours), None, CLI_SECONDS, None, min(theirs))
        print(figure.line(), flush=True)
        figures.append(figure)
    return figures


def _process_seconds(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--requests", type=int, default=400, help="per case and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", choices=("batch", "services"), default="batch")
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--port", type=int, default=18781)
    parser.add_argument("--quick", action="store_true", help="500 instances: does it still run?")
    args = parser.parse_args()
    if args.quick:
        args.count, args.requests, args.rounds = 500, 20, 1
    kinds = [k.strip() for k in args.databases.split(",") if k.strip()]
    figures: list[Figure] = []
    for kind in kinds:
        if kind == "postgres" and not os.environ.get("VDC_TEST_POSTGRES_URL"):
            print("\n== PostgreSQL: skipped, VDC_TEST_POSTGRES_URL is not set ==", flush=True)
            continue
        figures += run(kind, args)
    passed = sum(f.passed for f in figures)
    print(f"\nlist: {passed} PASS, {len(figures) - passed} MISS (aims: API p50 < 20 ms and")
    print("p99 < 50 ms, web page p50 < 100 ms, vdc-manage instance list < 1 s)")


if __name__ == "__main__":
    main()

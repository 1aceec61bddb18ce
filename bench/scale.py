"""A launch against what the cloud already holds: the launch use case
(`compute.instances.launch`, the API's POST without HTTP) next to the same launch where
the cloud holds nothing, in the same run, on SQLite and PostgreSQL.

    .venv/bin/python bench/scale.py [--count 20000] [--launches 100] [--quick]
                                    [--databases sqlite,postgres]

1. a full network: launches into a network with 20,000 leases, alternating with launches
   of the same account into an empty network (same database); then the same network
   wrapped: its range's last address taken and one lease in 100 gone, so that each launch
   takes the lowest gap;
2. history: launches after 20,000 instances of the account, its default group and its
   host were terminated, alternating with launches into a fresh database.

The instances are seeded by bench/list_seed.py (one account, its /16 network); the history
is made by terminating them with vdc's state changes (`state_changes.compare_and_set`,
what a terminate job ends with). Alternating puts the machine's drift on both sides alike.
Aim for each: the median launch at most 1.5 times the baseline's. A launch used to read
every lease of its network (22 ms at 20,000) and visit every terminated instance of its
host and of its groups (30 ms at 20,000). PostgreSQL runs when VDC_TEST_POSTGRES_URL is
set (`make bench` starts the test server as `make test` does).

--quick (1,000 instances, 10 launches each) is what CI runs to check that the benchmark
still works (tests/integration/test_bench_scale.py); its figures mean little.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from launch import database  # noqa: E402
from list_seed import fast_writes, seed, settings_for  # noqa: E402
from sqlmodel import Session, col, select  # noqa: E402

from app.config import Settings  # noqa: E402
from app.db import make_engine  # noqa: E402
from app.migrations import upgrade  # noqa: E402
from app.models import Account, Image, Instance, Network, NetworkInterface, Volume  # noqa: E402
from app.models.instance import InstanceCreate, InstanceState  # noqa: E402
from app.models.network import NetworkCreate  # noqa: E402
from app.models.volume import VolumeState  # noqa: E402
from app.services.compute import instances  # noqa: E402
from app.services.network import networks  # noqa: E402
from app.services.network.addresses import address_number  # noqa: E402
from app.services.state_changes import compare_and_set  # noqa: E402

AIM = 1.5
GAP_EVERY = 100  # a wrapped network: one lease in this many gone
TITLES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


@contextmanager
def seeded(kind: str, count: int) -> Iterator[tuple[str, Settings]]:
    """A database with `count` instances of account tenant00 in its network: (url, settings)."""
    with (
        tempfile.TemporaryDirectory(prefix="vdc-bench-scale-") as tmp,
        database("postgresql" if kind == "postgres" else "sqlite", Path(tmp)) as url,
    ):
        settings = settings_for(Path(tmp) / "data", url, "bench-scale")
        # Room on the one test host for every seeded instance: the subject is elsewhere.
        settings.cpu_allocation_ratio = settings.memory_allocation_ratio = 100.0
        upgrade(url)
        engine = make_engine(url)
        fast_writes(engine)
        seed(engine, settings, count, 1, "batch")
        engine.dispose()
        yield url, settings


def analyze(url: str) -> None:
    """What autovacuum does soon after a bulk load (PostgreSQL)."""
    if url.startswith("sqlite"):
        return
    engine = make_engine(url)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text("VACUUM ANALYZE"))
    engine.dispose()


def terminate_all(url: str) -> None:
    """Every instance terminated, as a terminate leaves it: state through compare_and_set,
    no address, its volumes deleted."""
    engine = make_engine(url)
    fast_writes(engine)
    with Session(engine) as session:
        for instance_id in session.exec(select(Instance.id)).all():
            compare_and_set(
                session,
                Instance,
                instance_id,
                tuple(s for s in InstanceState if s != InstanceState.terminated),
                InstanceState.terminated,
            )
        session.execute(sa.delete(NetworkInterface))
        session.execute(sa.update(Volume).values(state=VolumeState.deleted, instance_id=None))
        session.commit()
    engine.dispose()


class Launcher:
    """Launches one instance of tenant00 (into `network`, else its own network) and
    returns the seconds it took; `engine` is its own."""

    def __init__(self, url: str, settings: Settings, network: str | None = None) -> None:
        self.settings = settings
        self.engine = make_engine(url)
        with Session(self.engine) as session:
            account = session.exec(select(Account).where(Account.name == "tenant00")).one()
            image = session.exec(select(Image)).first()
            assert image is not None
            own = session.exec(select(Network.id).where(col(Network.account_id) == account.id))
            self.body = InstanceCreate(
                image_id=image.id, instance_type="nano", network_id=network or own.first()
            )
            self.account_id = account.id

    def __call__(self) -> float:
        with Session(self.engine, expire_on_commit=False) as session:
            account = session.get(Account, self.account_id)
            assert account is not None
            started = time.perf_counter()
            instances.launch(session, self.settings, account, self.body)
            return time.perf_counter() - started


def compare(launches: int, measured: Launcher, baseline: Launcher) -> tuple[float, float]:
    """Medians (ms) of `launches` each, alternating; the first of each warms its statements.
    The launchers' engines are closed after."""
    samples: tuple[list[float], list[float]] = ([], [])
    try:
        for n in range(launches + 1):
            for side, launch in zip(samples, (measured, baseline), strict=True):
                seconds = launch()
                if n:
                    side.append(seconds)
    finally:
        measured.engine.dispose()
        baseline.engine.dispose()
    return statistics.median(samples[0]) * 1000, statistics.median(samples[1]) * 1000


def report(kind: str, args: argparse.Namespace, name: str, subject: str, baseline: str,
           medians: tuple[float, float]) -> None:  # fmt: skip
    """The figure and its verdict (the line `make bench` gathers)."""
    ratio = medians[0] / medians[1]
    print(
        f"scale/{kind}: a launch {subject}: median {medians[0]:.1f} ms; {baseline} (baseline):"
        f" {medians[1]:.1f} ms ({TITLES[kind]}, {args.launches} each, alternating)"
    )
    print(
        f"scale/{kind}: {name} / baseline = {ratio:.2f} (aim <= {AIM})"
        f"  {'PASS' if ratio <= AIM else 'MISS'}",
        flush=True,
    )


def full_network(kind: str, args: argparse.Namespace) -> None:
    with seeded(kind, args.count) as (url, settings):
        engine = make_engine(url)
        with Session(engine) as session:
            account = session.exec(select(Account).where(Account.name == "tenant00")).one()
            full_id = session.exec(
                select(Network.id).where(col(Network.account_id) == account.id)
            ).one()
            empty = networks.create_network(
                session, NetworkCreate(name="empty", cidr="10.250.0.0/16", account_id=account.id)
            )
            session.commit()
            empty_id = empty.id
        engine.dispose()
        analyze(url)
        full, fresh = Launcher(url, settings, full_id), Launcher(url, settings, empty_id)
        medians = compare(args.launches, full, fresh)
        subject = f"into a network with {args.count} leases"
        report(kind, args, "full network", subject, "into an empty network", medians)

        gaps = wrap(url, full_id, args.launches)
        analyze(url)
        wrapped, fresh = Launcher(url, settings, full_id), Launcher(url, settings, empty_id)
        medians = compare(args.launches, wrapped, fresh)
    subject = f"into a network whose last address is taken, {gaps} gaps in its leases"
    report(kind, args, "wrapped network", subject, "into an empty network", medians)


def wrap(url: str, network_id: str, launches: int) -> int:
    """The seeded network as a long-lived one is: its range's last address in use (its
    highest lease moved there), and one lease in every GAP_EVERY gone (in fewer, when
    the launches would otherwise fill them all), as the terminated instances leave them;
    the number of gaps. Each launch then takes the lowest gap, so the launches measured
    reach ever further up the leases."""
    engine = make_engine(url)
    with Session(engine) as session:
        network = session.get(Network, network_id)
        assert network is not None
        end = address_number(network.dhcp_end)
        leases = session.exec(
            select(NetworkInterface.id)
            .where(col(NetworkInterface.network_id) == network.id)
            .order_by(col(NetworkInterface.ip_number))
        ).all()
        session.execute(
            sa.update(NetworkInterface)
            .where(col(NetworkInterface.id) == leases[-1])
            .values(ip_number=end, ip_address=network.dhcp_end)
        )
        every = max(1, min(GAP_EVERY, len(leases) // (2 * (launches + 1))))
        gone = leases[every // 2 : -1 : every]
        session.execute(sa.delete(NetworkInterface).where(col(NetworkInterface.id).in_(gone)))
        session.commit()
    engine.dispose()
    return len(gone) + 1  # and the one the moved lease left


def history(kind: str, args: argparse.Namespace) -> None:
    with ExitStack() as stack:
        old_url, old_settings = stack.enter_context(seeded(kind, args.count))
        new_url, new_settings = stack.enter_context(seeded(kind, 1))
        for url in (old_url, new_url):
            terminate_all(url)
            analyze(url)
        old, new = Launcher(old_url, old_settings), Launcher(new_url, new_settings)
        medians = compare(args.launches, old, new)
    subject = f"after {args.count} terminated instances"
    report(kind, args, "history", subject, "after 1", medians)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=20000, help="leases; terminated instances")
    parser.add_argument("--launches", type=int, default=100, help="on each side of a figure")
    parser.add_argument("--quick", action="store_true", help="1,000 instances, 10 launches (CI)")
    parser.add_argument(
        "--databases",
        default="sqlite,postgres" if os.environ.get("VDC_TEST_POSTGRES_URL") else "sqlite",
    )
    args = parser.parse_args()
    if args.quick:
        args.count, args.launches = 1000, 10
    for kind in args.databases.split(","):
        full_network(kind, args)
        history(kind, args)


if __name__ == "__main__":
    main()

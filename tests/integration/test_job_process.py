"""`vdc serve` runs its job workers in a child process (app/job_process.py): the jobs run
there, the API's commits wake it through its doorbell, SQLite writers of both processes
queue on one file lock, its launch durations reach GET /metrics, and it is started again
when it dies and stopped with the server."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import Session

from app import job_doorbell
from app.db import make_engine
from app.services import jobs
from tests.integration.served import Served, served_world, vdc_serve


def children(pid: int) -> dict[int, str]:
    """pid -> `python -m MODULE`'s module, of the process's children (each thread's: a
    child started again is the watcher thread's)."""
    found = {}
    spawned = [
        c for t in Path(f"/proc/{pid}/task").iterdir() for c in (t / "children").read_text().split()
    ]
    for child in spawned:
        argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        if b"-m" in argv:
            found[int(child)] = argv[argv.index(b"-m") + 1].decode()
    return found


def job_process_of(served: Served) -> int:
    (pid,) = [p for p, module in children(served.pid).items() if module == "app.job_process"]
    return pid


def until(check: Callable[[], object], timeout: float = 60, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what or check}"
        time.sleep(0.05)
    return result


def launch_and_wait(api: httpx.Client, image_id: str) -> str:
    launched = api.post("/api/v1/instances", json={"image_id": image_id, "instance_type": "nano"})
    assert launched.status_code == 202, launched.text
    instance_id = launched.json()["id"]

    def running() -> bool:
        state = api.get(f"/api/v1/instances/{instance_id}").json()["state"]
        assert state in ("pending", "starting", "running"), state
        return state == "running"

    until(running, what=f"{instance_id} running")
    return str(instance_id)


def launch_seconds_count(api: httpx.Client) -> float:
    for line in api.get("/metrics").text.splitlines():
        if line.startswith("vdc_instance_launch_duration_seconds_count "):
            return float(line.split()[1])
    return -1.0  # no such series (the job process has not published yet)


def test_jobs_run_in_the_child_which_comes_back_and_goes_with_the_server(
    tmp_path: Path,
    free_tcp_port_factory: Callable[[], int],
    test_host_uri: Callable[..., str],
) -> None:
    with vdc_serve(tmp_path, free_tcp_port_factory, VDC_ALLOW_TEST_HOSTS="true") as served:
        api, image_id = served_world(served, tmp_path, test_host_uri())
        first = job_process_of(served)
        assert launch_seconds_count(api) == 0  # published at its start, before any launch

        launch_and_wait(api, image_id)
        database = sa.create_engine(f"sqlite:///{served.files / 'vdc.sqlite3'}")
        with database.connect() as connection:
            owners = connection.execute(sa.text("SELECT lease_owner FROM jobs")).scalars().all()
        # The launch job was claimed by the child (a worker's owner is host:pid:nonce).
        assert owners and all(owner.split(":")[1] == str(first) for owner in owners), owners
        until(lambda: launch_seconds_count(api) == 1, 10, "the launch in GET /metrics")

        os.kill(first, signal.SIGKILL)  # a child of the server this test started
        second = until(
            lambda: [
                p for p, m in children(served.pid).items() if m == "app.job_process" and p != first
            ],
            30,
            "a new job process",
        )
        launch_and_wait(api, image_id)
        database.dispose()

    # vdc serve stopped: its job process with it.
    assert not Path(f"/proc/{second[0]}").exists() or _is_zombie(second[0])  # type: ignore[index]


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.fixture
def sqlite_engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    from sqlmodel import SQLModel

    engine = make_engine(f"sqlite:///{tmp_path / 'vdc.sqlite3'}")
    SQLModel.metadata.create_all(engine)
    yield engine
    engine.dispose()


def test_a_commit_that_queues_jobs_rings_the_doorbell_once_and_a_rollback_does_not(
    sqlite_engine: sa.Engine, tmp_path: Path
) -> None:
    path = tmp_path / "run" / "jobs.sock"
    heard: list[int] = []
    rung = threading.Event()

    def woken(count: int) -> None:
        heard.append(count)
        rung.set()

    listener = job_doorbell.open_listener(path, woken)
    assert listener is not None
    listener.start()
    job_doorbell.register(sqlite_engine, path)
    try:
        with Session(sqlite_engine) as session:
            jobs.enqueue(session, "sync", None)
            session.rollback()  # queued nothing
            jobs.enqueue(session, "sync", None, delay=5.0)
            session.commit()  # not runnable yet: the poll finds it
            jobs.enqueue(session, "sync", None)
            jobs.enqueue(session, "sync", None)
            session.commit()
        assert rung.wait(10)
        time.sleep(0.2)  # anything else that was rung has arrived by now
        assert heard == [2]
    finally:
        job_doorbell.register(sqlite_engine, None)
        listener.close()
    assert not path.exists()


def test_a_ring_nobody_hears_is_dropped_and_a_too_long_path_means_polling(
    sqlite_engine: sa.Engine, tmp_path: Path
) -> None:
    job_doorbell.register(sqlite_engine, tmp_path / "nobody.sock")
    try:
        job_doorbell.ring(sqlite_engine, 3)  # no error: the poll finds the job
    finally:
        job_doorbell.register(sqlite_engine, None)
    too_long = tmp_path / ("x" * 120) / "jobs.sock"
    assert job_doorbell.open_listener(too_long, lambda _: None) is None


TRY_LOCK = """
import fcntl, sys
with open(sys.argv[1], "a") as f:
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit(3)
"""


def test_a_write_transaction_holds_the_writers_file_lock_other_processes_queue_on(
    sqlite_engine: sa.Engine, tmp_path: Path
) -> None:
    lock_file = str(tmp_path / "vdc.sqlite3") + ".writers"

    def other_process_may_write() -> bool:
        tried = subprocess.run([sys.executable, "-c", TRY_LOCK, lock_file], check=False)
        assert tried.returncode in (0, 3)
        return tried.returncode == 0

    with Session(sqlite_engine) as session:
        session.execute(sa.text("SELECT count(*) FROM jobs"))  # a read takes nothing
        assert other_process_may_write()
        jobs.enqueue(session, "sync", None)
        session.flush()  # the first write
        assert not other_process_may_write()
        session.commit()
        assert other_process_may_write()
        jobs.enqueue(session, "sync", None)
        session.flush()
        assert not other_process_may_write()
        session.rollback()
        assert other_process_may_write()
    # The other side: this process waits while another holds it, then writes.
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, lock_file], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with Session(sqlite_engine) as session:
            jobs.enqueue(session, "sync", None)
            session.commit()
        assert time.monotonic() - started >= 0.4  # waited for the holder's 0.5 s
    finally:
        holder.wait(10)
    with open(lock_file) as f:  # released with the commit
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)


HOLD_LOCK = """
import fcntl, sys, time
with open(sys.argv[1], "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    print("held", flush=True)
    time.sleep(0.5)
"""


def test_on_postgresql_each_process_names_its_connections_and_stays_in_its_pool(
    tmp_path: Path,
    free_tcp_port_factory: Callable[[], int],
    test_host_uri: Callable[..., str],
    postgres_url: str,
) -> None:
    """The three processes' pools add up under PostgreSQL's max_connections: each holds
    at most its pool's connections while launches run, under its own application_name."""
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy.engine import make_url

    from app.db import API_POOL, METADATA_POOL, job_pool

    caps = {pool.name: pool.size + pool.overflow for pool in (API_POOL, METADATA_POOL, job_pool(4))}
    name = make_url(postgres_url).database
    watcher = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    most: dict[str, int] = {}

    def look() -> None:
        with watcher.connect() as connection:
            rows = connection.execute(
                sa.text(
                    "SELECT application_name, count(*) FROM pg_stat_activity"
                    " WHERE datname = :d GROUP BY application_name"
                ),
                {"d": name},
            ).all()
        for application, count in rows:
            most[application] = max(most.get(application, 0), count)

    with vdc_serve(
        tmp_path,
        free_tcp_port_factory,
        VDC_ALLOW_TEST_HOSTS="true",
        VDC_DATABASE_URL=postgres_url,
        VDC_WORKERS="4",
    ) as served:
        api, image_id = served_world(served, tmp_path, test_host_uri())
        with ThreadPoolExecutor(16) as launches:
            done = [launches.submit(launch_and_wait, api, image_id) for _ in range(16)]
            while not all(f.done() for f in done):
                look()
                time.sleep(0.05)
            for future in done:
                future.result()
        look()
    watcher.dispose()
    assert set(caps) <= set(most), most  # each process is there, by its name
    for application, cap in caps.items():
        assert most[application] <= cap, (application, most)

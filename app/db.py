"""Engine and sessions; SQLite by default, PostgreSQL through VDC_DATABASE_URL."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlmodel import Session, create_engine
from starlette.requests import Request

from app import job_doorbell
from app.config import Settings


class Pool(NamedTuple):
    """A process's PostgreSQL connections: `size` kept open, `overflow` more at once, and
    its `name` in pg_stat_activity (application_name), so an operator sees who holds them."""

    name: str
    size: int
    overflow: int


# The three processes of `vdc serve` each have a pool, and the pools add up under the
# server's max_connections (100 by default), with room left for vdc-manage, migrations and
# a second vdc serve during an upgrade: 30 + 14 + 4 with the default four job workers.
API_POOL = Pool("vdc-api", 10, 20)  # the API's and web UI's request threads
METADATA_POOL = Pool("vdc-metadata", 2, 2)  # its refreshes run one at a time
OTHER_POOL = Pool("vdc", 10, 20)  # vdc-manage, migrations, scripts


def job_pool(workers: int) -> Pool:
    """The job process: each worker thread, the lease renewer, the sync and the main loop;
    as many again for a step that opens a second session before it closes its first."""
    threads = workers + 3
    return Pool("vdc-jobs", threads, threads)


def make_engine(url: str, pool: Pool = OTHER_POOL) -> sa.Engine:
    """`pool` on PostgreSQL; SQLite opens a connection per use."""
    if url.startswith("sqlite"):
        # No pre-ping: a file has no server to lose, and the ping was a query per checkout.
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        WriterQueue(engine)
        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=pool.size,
        max_overflow=pool.overflow,
        connect_args={"application_name": pool.name},
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while the job worker writes; foreign keys are off by default.
    # synchronous=NORMAL is WAL's own recommendation: a commit is written to the WAL but not
    # fsynced (checkpoints are), so a killed or crashed vdc loses nothing and the database
    # stays consistent; only an OS crash or power loss may take back the last commits, as if
    # they came a moment later. With FULL every commit (a launch makes several) waited for
    # the disk.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


_WRITES = frozenset({"INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER"})


class WriterQueue:
    """SQLite lets one transaction write at a time. A writer that finds the database locked
    sleeps in SQLite's busy handler (1, 2, 5, 10 ... 100 ms between tries) and the database
    stands idle meanwhile; with the API and four job workers writing, much of a launch was
    spent so. Here the writers queue instead: a transaction takes the queue before its first
    write and gives it back when it commits or rolls back, so the next writer goes at once.
    Readers never wait (WAL).

    The queue is one per database file in each process (its engines share it), and the
    processes meet on an exclusive flock of `<database>.writers` beside the file: `vdc
    serve`'s API and its job process write to one database, and vdc-manage too. The kernel
    hands a released flock to its next waiter at once, and drops it with a process that
    dies. A thread that already writes through another connection goes straight to SQLite
    (which decides, as before), never waiting for itself."""

    def __init__(self, engine: sa.Engine, timeout: float = 30.0) -> None:
        database = engine.url.database
        if not database or database == ":memory:" or database.startswith("file:"):
            return  # nothing another process could share
        key = os.path.realpath(database)
        with _QUEUES_MADE:
            queue = _QUEUES.get(key)
            if queue is None:
                queue = _QUEUES[key] = _FileQueue(key + ".writers", timeout)
        sa.event.listen(engine, "before_cursor_execute", queue.before_execute)
        dialect = engine.dialect
        for name in ("do_commit", "do_rollback", "do_close"):
            setattr(dialect, name, queue.releasing(getattr(dialect, name)))


_QUEUES: dict[str, _FileQueue] = {}  # database file -> its queue in this process
_QUEUES_MADE = threading.Lock()


class _FileQueue:
    def __init__(self, lock_path: str, timeout: float) -> None:
        self._lock = threading.Lock()
        self._holder: Any = None  # the DBAPI connection that holds it
        self._thread: int | None = None
        self._timeout = timeout
        self._lock_path = lock_path
        self._file: int | None = None  # opened at the first write: a reader never needs it

    def before_execute(self, conn: sa.Connection, *args: Any) -> None:
        words = args[1].split(None, 1)  # the statement
        if not words or words[0].upper() not in _WRITES:
            return
        dbapi_connection = _raw(conn.connection)
        if self._holder is dbapi_connection or self._thread == threading.get_ident():
            return
        if not self._lock.acquire(timeout=self._timeout):
            return  # SQLite's busy handler decides
        # No timeout here: the holder is a transaction of a vdc process, and the kernel
        # drops its flock if that process dies. A read-only folder (no lock file): SQLite's
        # busy handler decides between processes, as before.
        with contextlib.suppress(OSError):
            self._flock(fcntl.LOCK_EX)
        self._holder, self._thread = dbapi_connection, threading.get_ident()

    def releasing(self, original: Callable[[Any], None]) -> Callable[[Any], None]:
        def call(connection: Any) -> None:
            try:
                original(connection)
            finally:
                if self._holder is not None and self._holder is _raw(connection):
                    self._holder = self._thread = None
                    try:
                        self._flock(fcntl.LOCK_UN)
                    finally:
                        self._lock.release()

        return call

    def _flock(self, operation: int) -> None:
        if self._file is None:
            if operation == fcntl.LOCK_UN:
                return
            self._file = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._file, operation)  # waits with the GIL released


def _raw(connection: Any) -> Any:
    """The sqlite3 connection itself, whether given it or the pool's proxy of it."""
    return getattr(connection, "dbapi_connection", None) or connection


def engine_for(settings: Settings, pool: Pool = OTHER_POOL) -> sa.Engine:
    """The engine of this data dir's database; a commit through it that queues a job rings
    the job process's doorbell (app/job_doorbell.py). `pool`: see make_engine."""
    if settings.effective_database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.effective_database_url, pool)
    job_doorbell.register(engine, settings.job_doorbell)
    return engine


@contextmanager
def session_scope(engine: sa.Engine) -> Iterator[Session]:
    """A unit of work: committed when the block ends, rolled back if it raises."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def get_session(request: Request) -> Iterator[Session]:
    """A request's session (a FastAPI dependency of the API and the web UI alike), on the
    engine the app was built with."""
    with Session(request.app.state.engine, expire_on_commit=False) as session:
        yield session

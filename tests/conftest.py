"""Fixtures shared by every layer: databases (SQLite and PostgreSQL), settings, the API.

Each test gets its own database, copied from a migrated template made once per run, so
tests never see each other's rows and migrations are exercised on both engines.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from app.config import Settings
from app.db import make_engine, session_scope
from app.main import create_app
from app.migrations import upgrade
from app.services.identity import accounts

POSTGRES_URL = os.environ.get("VDC_TEST_POSTGRES_URL", "")


# --- in CI every test runs and passes: a skip, an xfail or an xpass is a failure --------

# What the terminal reporter counts under each outcome, and what CI calls it.
NOT_RUN_AS_WRITTEN = {
    "skipped": "skipped",
    "xfailed": "expected to fail (xfail)",
    "xpassed": "marked xfail but passed (xpass)",
}


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if not os.environ.get("CI") or reporter is None:
        return
    for outcome, what in NOT_RUN_AS_WRITTEN.items():
        reports = reporter.stats.get(outcome, [])
        if not reports:
            continue
        reporter.write_line(
            f"CI: {len(reports)} test(s) {what}; in CI every test must run and pass:", red=True
        )
        for report in reports:
            reason = getattr(report, "wasxfail", "") or (
                report.longrepr[-1] if isinstance(report.longrepr, tuple) else ""
            )
            reporter.write_line(f"  {report.nodeid}: {reason}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# --- a run that is killed still cleans up ------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM (a CI timeout, a `kill`) stops the run as Ctrl-C does: fixtures are torn down,
    so its PostgreSQL databases are dropped. A run killed with SIGKILL cannot do that; the
    next run drops what it left (_drop_stale_databases)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"stopped by signal {signum}")


# --- databases -----------------------------------------------------------------------------


# A run's PostgreSQL databases carry its pid: vdc_template_<pid>, vdc_test_<pid>_<hex>.
# (Test databases named before the pid was in the name, vdc_test_<hex>, say nothing of
# their owner, so they are never taken for stale.)
OUR_DATABASE = re.compile(r"vdc_template_(?P<a>\d{1,7})|vdc_test_(?P<b>\d{1,7})_[0-9a-f]{12}")


def _admin_engine() -> sa.Engine:
    return sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, alive
    return True


def _drop_stale_databases(engine: sa.Engine) -> list[str]:
    """Drops the databases of earlier runs whose process is gone (killed before its
    teardown); those of runs still going, here or in another worktree, stay."""
    with engine.connect() as conn:
        names = conn.execute(
            sa.text(r"SELECT datname FROM pg_database WHERE datname LIKE 'vdc\_te%'")
        ).scalars()
        stale = []
        for name in names:
            match = OUR_DATABASE.fullmatch(name)
            pid = int(match["a"] or match["b"]) if match else os.getpid()
            if pid != os.getpid() and not _alive(pid):
                stale.append(name)
    dropped = []
    for name in stale:
        try:
            _drop_database(engine, name)
        except sa.exc.DBAPIError as error:  # not ours to drop after all: leave it, say so
            warnings.warn(f"left stale test database {name}: {error.orig}", stacklevel=1)
            continue
        dropped.append(name)
    return dropped


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    if not POSTGRES_URL:
        pytest.skip("VDC_TEST_POSTGRES_URL is not set (`make test` starts PostgreSQL and sets it)")
    name = f"vdc_template_{os.getpid()}"
    engine = _admin_engine()
    _drop_stale_databases(engine)
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    upgrade(make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False))
    yield name
    _drop_database(engine, name)
    engine.dispose()


def _drop_database(engine: sa.Engine, name: str) -> None:
    """DROP ... WITH (FORCE) ends our own leftover sessions, but may not end an autovacuum
    worker that just started on the new database (it is the superuser's); it is gone in a
    moment, so try again rather than fail a passing test in its teardown."""
    deadline = time.monotonic() + 30
    while True:
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            return
        except sa.exc.ProgrammingError as error:
            if "pg_signal_backend" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "vdc.sqlite3"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def postgres_url(postgres_template: str) -> Iterator[str]:
    name = f"vdc_test_{os.getpid()}_{uuid.uuid4().hex[:12]}"
    engine = _admin_engine()
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{postgres_template}"'))
    yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    _drop_database(engine, name)
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """The API suite runs once on each engine."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


# --- settings, app, accounts ---------------------------------------------------------------


@pytest.fixture
def import_dir(tmp_path: Path) -> Path:
    path = tmp_path / "import"
    path.mkdir()
    return path


@pytest.fixture
def settings(tmp_path: Path, database_url: str, import_dir: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        import_dirs=str(import_dir),
        max_image_size=256 * 1024 * 1024,
        allow_test_hosts=True,  # libvirt's test:// driver stands in for hosts
        # Fast clocks for tests: the worker notices deaths, power-offs and stops quickly.
        sync_interval=0.3,
        job_lease_seconds=3,
        stop_timeout=2,
    )


@pytest.fixture
def engine(settings: Settings) -> Iterator[sa.Engine]:
    engine = make_engine(settings.effective_database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


class Keys:
    """Creates accounts on demand and remembers their keys: keys.admin, keys.new("alice")."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self.ids: dict[str, str] = {}
        self._admin: str | None = None

    def new(self, name: str, admin: bool = False) -> str:
        with session_scope(self._engine) as session:
            account, key = accounts.create_account(session, name, is_admin=admin)
            self.ids[name] = account.id
        return key

    @property
    def admin(self) -> str:
        if self._admin is None:
            self._admin = self.new("root", admin=True)
        return self._admin


@pytest.fixture
def keys(engine: sa.Engine) -> Keys:
    return Keys(engine)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# --- disk images made with qemu-img --------------------------------------------------------


def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


@pytest.fixture
def make_disk(import_dir: Path):  # type: ignore[no-untyped-def]
    """make_disk("a.qcow2", "qcow2", "64M") -> a real image file in the import dir."""

    def make(name: str, fmt: str = "qcow2", size: str = "64M", *extra: str) -> Path:
        path = import_dir / name
        qemu_img("create", "-f", fmt, *extra, str(path), size)
        return path

    return make


def make_iso_file(path: Path, label: str = "VDC_TEST") -> Path:
    """A small ISO 9660 file (an installer CD as far as vdc can tell), made by xorriso."""
    content = path.parent / f".{path.name}.d"
    content.mkdir(exist_ok=True)
    (content / "README.TXT").write_text("a test CD\n")
    subprocess.run(
        ["xorriso", "-as", "mkisofs", "-quiet", "-V", label, "-o", str(path), str(content)],
        check=True,
        capture_output=True,
    )
    return path


@pytest.fixture
def make_iso(import_dir: Path):  # type: ignore[no-untyped-def]
    """make_iso("debian.iso") -> a real ISO 9660 file in the import dir."""
    return lambda name: make_iso_file(import_dir / name)


# --- libvirt test-driver hosts -------------------------------------------------------------

NODE_XML = """<node>
  <cpu><mhz>2000</mhz><model>x86_64</model><active>{cpus}</active><nodes>1</nodes>
    <sockets>1</sockets><cores>{cpus}</cores><threads>1</threads></cpu>
  <memory>{memory_kib}</memory>
</node>
"""


@pytest.fixture
def test_host_uri(tmp_path: Path):  # type: ignore[no-untyped-def]
    """test_host_uri("h1", cpus=16, memory_mib=32768) -> a fresh libvirt test:// host URI.

    Each URI is its own in-memory hypervisor (unlike test:///default, shared by the
    whole process), so tests never see each other's domains."""
    from hypervisor.connection import POOL

    made: list[str] = []

    def make(name: str = "host", cpus: int = 16, memory_mib: int = 32768) -> str:
        path = tmp_path / f"{name}.xml"
        path.write_text(NODE_XML.format(cpus=cpus, memory_kib=memory_mib * 1024))
        made.append(f"test://{path}")
        return made[-1]

    yield make
    for uri in made:
        POOL.forget(uri)

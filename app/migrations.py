"""Running alembic from inside vdc, and telling whether a database is up to date.

Telling is cheap: every `vdc-manage` command asks first, so it reads the revision ids from
the migration files' `revision`/`down_revision` lines and the database's alembic_version
row, without importing alembic (a test checks the head found equals alembic's own)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from app.db import make_engine

if TYPE_CHECKING:
    from alembic.config import Config

ALEMBIC_DIR = Path(__file__).resolve().parent.parent / "alembic"
_REVISION = re.compile(r'^revision: str = "([^"]+)"$', re.MULTILINE)
_DOWN_REVISION = re.compile(r'^down_revision: str \| None = (?:"([^"]+)"|None)$', re.MULTILINE)


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    # ConfigParser would read "%" in a password as interpolation.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def revisions() -> dict[str, str | None]:
    """Each migration's revision id -> the one it follows (None for the first)."""
    found: dict[str, str | None] = {}
    for path in sorted((ALEMBIC_DIR / "versions").glob("*.py")):
        text = path.read_text()
        revision, down = _REVISION.search(text), _DOWN_REVISION.search(text)
        if revision is None or down is None:
            raise RuntimeError(f"{path.name}: no `revision: str = ...` or `down_revision` line")
        found[revision.group(1)] = down.group(1)
    return found


def head_revision(url: str = "") -> str:
    """The newest migration: the one no other follows. (`url` is not needed; kept for the
    callers that pass it.)"""
    known = revisions()
    heads = set(known) - {down for down in known.values() if down}
    if len(heads) != 1:
        raise RuntimeError(f"the migrations have {len(heads)} heads: {sorted(heads)}")
    return heads.pop()


def current_revision(url: str) -> str | None:
    """The schema revision of the database, None when it has none (or does not exist)."""
    sqlite_path = make_url(url).database if url.startswith("sqlite") else None
    if sqlite_path and not Path(sqlite_path).exists():
        return None  # looking must not create an empty database file
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            if not sa.inspect(connection).has_table("alembic_version"):
                return None
            found = connection.execute(sa.text("SELECT version_num FROM alembic_version"))
            return found.scalar()
    finally:
        engine.dispose()


def is_current(url: str) -> bool:
    return current_revision(url) == head_revision(url)

"""Alembic's schema is exactly the models' schema, on both engines."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

import app.models  # noqa: F401 - registers the tables
from app.migrations import head_revision, is_current


def test_migrated_schema_matches_the_models(database_url: str) -> None:
    assert is_current(database_url)
    engine = sa.create_engine(database_url)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    engine.dispose()
    assert differences == []
    assert head_revision(database_url) == "0003"


def test_seeds(database_url: str) -> None:
    engine = sa.create_engine(database_url)
    with engine.connect() as connection:
        shared = connection.execute(
            sa.text("SELECT name, is_system FROM accounts WHERE id = 'a-shpoolxx'")
        ).one()
        types = (
            connection.execute(sa.text("SELECT name FROM instance_types ORDER BY memory_size"))
            .scalars()
            .all()
        )
    engine.dispose()
    assert tuple(shared) == ("shpool", True)
    assert types == ["nano", "small", "medium", "large", "xlarge"]

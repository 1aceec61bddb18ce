"""New rows written with a core INSERT, not through the session's unit of work.

A launch writes five rows (instance, NIC, membership, root volume, job). Through the ORM
each is tracked, sorted and flushed, and that bookkeeping cost more of the API's CPU per
launch than the INSERTs themselves. Here the objects stay the caller's: the session does
not track them, so the caller reads them (for its answer, say) but must not change them
and expect an UPDATE.
"""

from __future__ import annotations

import functools

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, SQLModel


def insert(session: Session, *rows: SQLModel) -> None:
    """INSERTs the rows now, in the session's transaction: one statement per table, the
    tables in the order of their first row (so give a parent before its children)."""
    session.flush()  # objects the session holds go first: a row here may refer to them
    by_table: dict[sa.Table, list[dict[str, object]]] = {}
    for row in rows:
        table: sa.Table = row.__table__  # type: ignore[attr-defined]
        by_table.setdefault(table, []).append({c.key: getattr(row, c.key) for c in table.c})
    for table, values in by_table.items():
        session.execute(_statement(table), values)


def insert_unless_taken(session: Session, row: SQLModel) -> bool:
    """INSERTs the row unless one of its unique values is taken (then nothing, and False):
    `INSERT ... ON CONFLICT DO NOTHING`, so a clash costs no savepoint to roll back to."""
    session.flush()
    table: sa.Table = row.__table__  # type: ignore[attr-defined]
    dialect = session.get_bind().dialect.name
    values = {c.key: getattr(row, c.key) for c in table.c}
    # RETURNING, not the rowcount: psycopg's is -1 here, written or not.
    return session.execute(_unless_taken(table, dialect), values).first() is not None


@functools.cache
def _statement(table: sa.Table) -> sa.Insert:
    return sa.insert(table)


@functools.cache
def _unless_taken(table: sa.Table, dialect: str) -> sa.Insert:
    statement: sa.Insert
    if dialect == "postgresql":
        statement = postgresql.insert(table).on_conflict_do_nothing()
    elif dialect == "sqlite":
        statement = sqlite.insert(table).on_conflict_do_nothing()
    else:
        raise ValueError(f"no INSERT ... ON CONFLICT for {dialect}")
    return statement.returning(*table.primary_key.columns)

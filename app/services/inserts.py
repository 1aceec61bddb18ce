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


@functools.cache
def _statement(table: sa.Table) -> sa.Insert:
    return sa.insert(table)

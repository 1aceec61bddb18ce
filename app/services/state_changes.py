"""Compare-and-set state changes, the one way an instance's or a volume's state moves.

A change names the states it may start from; it happens only if the row is still in one of
them, in a single UPDATE. So a job never overrides a newer decision (a terminate, a force),
and of two requests racing for one row exactly one wins.
"""

from __future__ import annotations

import functools
from typing import Any, cast, overload

import sqlalchemy as sa
from sqlmodel import Session

from app.models import Instance, InstanceSecurityGroup, Volume
from app.models.common import utcnow
from app.models.instance import GONE_STATES, InstanceState
from app.models.volume import VolumeState


@overload
def compare_and_set(
    db: sa.Engine | Session,
    model: type[Instance],
    row_id: str,
    expected: tuple[InstanceState, ...],
    new: InstanceState,
    **fields: object,
) -> bool: ...


@overload
def compare_and_set(
    db: sa.Engine | Session,
    model: type[Volume],
    row_id: str,
    expected: tuple[VolumeState, ...],
    new: VolumeState,
    **fields: object,
) -> bool: ...


def compare_and_set(
    db: sa.Engine | Session,
    model: type[Instance] | type[Volume],
    row_id: str,
    expected: tuple[InstanceState, ...] | tuple[VolumeState, ...],
    new: InstanceState | VolumeState,
    **fields: object,
) -> bool:
    """Sets the row's state (and `fields`) only if it is still one of `expected`; True when
    it did. With an engine the change commits at once; with a session it joins the
    session's transaction (a core UPDATE: objects the session holds are not updated, so a
    caller that answers with the row refreshes it)."""
    table: sa.Table = model.__table__  # type: ignore[union-attr]
    statement = _statement(table, expected, new, tuple(sorted(fields)))
    values = {"row_id": row_id, "now": utcnow(), **{f"new_{k}": v for k, v in fields.items()}}
    gone = model is Instance and new in GONE_STATES

    def change(execute: Any) -> bool:  # a session's or a connection's execute
        changed = cast(sa.CursorResult[Any], execute(statement, values)).rowcount == 1
        if changed and gone:
            execute(_MARK_MEMBERSHIPS, {"instance_ids": [row_id], "now_live": False})
        return changed

    if isinstance(db, Session):
        db.flush()  # as the ORM's UPDATE would: the session's pending changes go first
        return change(db.execute)
    with db.begin() as connection:
        return change(connection.execute)


@functools.cache
def _statement(
    table: sa.Table, expected: tuple[str, ...], new: str, fields: tuple[str, ...]
) -> sa.Update:
    """The UPDATE for one kind of change, built once: a change is the job workers' most
    frequent statement, and building one (its clauses, its cache key) cost more than
    running it. Parameters: row_id, now and new_<field> for each of `fields`."""
    return (
        sa.update(table)
        .where(table.c.id == sa.bindparam("row_id"))
        .where(table.c.state.in_(expected))
        .values(
            state=new,
            updated_at=sa.bindparam("now", type_=table.c.updated_at.type),
            # (a parameter may not be named as a column the statement sets)
            **{name: sa.bindparam(f"new_{name}", type_=table.c[name].type) for name in fields},
        )
    )


def mark_memberships(session: Session, instance_ids: list[str], live: bool) -> None:
    """The instances' group memberships count (live) or not (gone): with their state, in
    the session's transaction (InstanceSecurityGroup.live)."""
    session.execute(_MARK_MEMBERSHIPS, {"instance_ids": instance_ids, "now_live": live})


_memberships = InstanceSecurityGroup.__table__  # type: ignore[attr-defined]
_MARK_MEMBERSHIPS = (
    sa.update(_memberships)
    .where(_memberships.c.instance_id.in_(sa.bindparam("instance_ids", expanding=True)))
    .values(live=sa.bindparam("now_live", type_=_memberships.c.live.type))
)

"""Compare-and-set state changes, the one way an instance's or a volume's state moves.

A change names the states it may start from; it happens only if the row is still in one of
them, in a single UPDATE. So a job never overrides a newer decision (a terminate, a force),
and of two requests racing for one row exactly one wins.
"""

from __future__ import annotations

from typing import Any, cast, overload

import sqlalchemy as sa
from sqlmodel import Session, col

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
    session's transaction."""
    statement = (
        sa.update(model)
        .where(col(model.id) == row_id)
        .where(col(model.state).in_(expected))
        .values(state=new, updated_at=utcnow(), **fields)
    )
    gone = model is Instance and new in GONE_STATES

    def change(execute: Any) -> bool:  # a session's or a connection's execute
        changed = cast(sa.CursorResult[Any], execute(statement)).rowcount == 1
        if changed and gone:
            execute(mark_memberships([row_id], live=False))
        return changed

    if isinstance(db, Session):
        return change(db.execute)
    with db.begin() as connection:
        return change(connection.execute)


def mark_memberships(instance_ids: list[str], live: bool) -> sa.Update:
    """The instances' group memberships count (live) or not (gone): with their state, in
    the same transaction (InstanceSecurityGroup.live)."""
    return (
        sa.update(InstanceSecurityGroup)
        .where(col(InstanceSecurityGroup.instance_id).in_(instance_ids))
        .values(live=live)
    )

"""What every job handler gets: the settings and the database engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from app.config import Settings
from app.models.common import utcnow


@dataclass
class JobContext:
    settings: Settings
    engine: sa.Engine

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)


def compare_and_set(
    engine: sa.Engine,
    model: Any,
    row_id: str,
    expected: tuple[str, ...],
    new: str,
    **fields: object,
) -> bool:
    """Sets a row's state only if it is still one of `expected` (a job never overrides a
    newer decision: a terminate, a force); True when it did."""
    values = {"state": new, "updated_at": utcnow(), **fields}
    with engine.begin() as connection:
        result = connection.execute(
            sa.update(model)
            .where(model.id == row_id)
            .where(model.state.in_(expected))
            .values(**values)
        )
    return result.rowcount == 1

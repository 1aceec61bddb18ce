"""Pieces every model family shares: UTC timestamps and the list envelope."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.engine import Dialect

T = TypeVar("T")
E = TypeVar("E", bound=StrEnum)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Stores UTC; always gives back an aware datetime (SQLite drops the zone otherwise)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def timestamp_column(nullable: bool = False, **kwargs: Any) -> sa.Column[datetime]:
    return sa.Column(UTCDateTime(), nullable=nullable, **kwargs)


class StrEnumType(sa.types.TypeDecorator[E]):
    """A state enum stored as its plain string (VARCHAR): the schema keeps a string column, with
    no database enum type to migrate when a state is added, and the code reads typed states."""

    impl = sa.String
    cache_ok = True

    def __init__(self, enum: type[E], length: int = 16) -> None:
        super().__init__(length)
        self.enum = enum
        self.length = length

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        # Plain strings pass too: a list filter `?state=nonsense` matches nothing, as before.
        return None if value is None else str(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> E | None:
        return None if value is None else self.enum(value)


def state_column(enum: type[StrEnum], *, index: bool = False) -> sa.Column[Any]:
    return sa.Column(StrEnumType(enum), nullable=False, index=index)


class Page(BaseModel, Generic[T]):
    """Every list answer: one page of items plus what is needed to fetch the next."""

    items: list[T]
    total: int
    limit: int
    offset: int

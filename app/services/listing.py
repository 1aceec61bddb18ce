"""The list convention every resource follows: filters, sort, limit/offset, total."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlmodel import Session, SQLModel, select
from sqlmodel.sql.expression import SelectOfScalar

from app.errors import BadRequest

M = TypeVar("M", bound=SQLModel)

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


@dataclass(frozen=True)
class PageRequest:
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    sort: str = "created_at"


def fetch_page(
    session: Session,
    model: type[M],
    statement: SelectOfScalar[M],
    page: PageRequest,
    sortable: Iterable[str],
    filters: Mapping[str, Any] | None = None,
) -> tuple[list[M], int]:
    """Applies equality filters and the sort (`field` or `-field`), then one page."""
    for field, value in (filters or {}).items():
        if value is not None:
            statement = statement.where(getattr(model, field) == value)
    total = session.scalar(select(sa.func.count()).select_from(statement.subquery())) or 0
    field, descending = page.sort.removeprefix("-"), page.sort.startswith("-")
    allowed = set(sortable)
    if field not in allowed:
        raise BadRequest(f"cannot sort by {field!r}; choose one of {', '.join(sorted(allowed))}")
    column = getattr(model, field)
    primary_key = getattr(model, "id")  # noqa: B009 - every vdc table has an id
    order = [column.desc(), primary_key.desc()] if descending else [column.asc(), primary_key]
    rows = session.exec(statement.order_by(*order).offset(page.offset).limit(page.limit))
    return list(rows), int(total)

"""The list convention every resource follows: filters, sort, limit/offset, total."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.sql.base import ExecutableOption
from sqlmodel import Session, SQLModel
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
    options: Sequence[ExecutableOption] = (),
) -> tuple[list[M], int]:
    """Applies equality filters and the sort (`field` or `-field`), then one page; `options`
    shape how the page's rows load (e.g. a large column deferred)."""
    paged, counting = page_select(model, statement, page, sortable, filters)
    total = session.scalar(counting) or 0
    return list(session.exec(paged.options(*options))), int(total)


def page_select(
    model: type[M],
    statement: SelectOfScalar[M],
    page: PageRequest,
    sortable: Iterable[str],
    filters: Mapping[str, Any] | None = None,
) -> tuple[SelectOfScalar[M], sa.Select[int]]:
    """fetch_page's selects, to run as they are or of other columns: (the page, how many
    rows there are in all)."""
    for field, value in (filters or {}).items():
        if value is not None:
            statement = statement.where(getattr(model, field) == value)
    # COUNT(*) over the same FROM and WHERE, not over a subquery of whole rows: the
    # databases count from an index then, without reading the rows.
    counting = statement.with_only_columns(sa.func.count(), maintain_column_froms=True)
    field, descending = page.sort.removeprefix("-"), page.sort.startswith("-")
    allowed = set(sortable)
    if field not in allowed:
        raise BadRequest(f"cannot sort by {field!r}; choose one of {', '.join(sorted(allowed))}")
    column = getattr(model, field)
    primary_key = getattr(model, "id")  # noqa: B009 - every vdc table has an id
    order = [column.desc(), primary_key.desc()] if descending else [column.asc(), primary_key]
    paged = statement.order_by(*order).offset(page.offset).limit(page.limit)
    return paged, counting.order_by(None)

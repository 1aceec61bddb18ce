"""Query parameters of the list convention, shared by every list route."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query

from app.services.listing import DEFAULT_LIMIT, MAX_LIMIT, PageRequest


def page_request(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page")] = DEFAULT_LIMIT,
    offset: Annotated[int, Query(ge=0, le=2**31, description="Items to skip")] = 0,
    sort: Annotated[
        str, Query(max_length=64, description="Field to sort by; prefix with `-` for descending")
    ] = "created_at",
) -> PageRequest:
    return PageRequest(limit=limit, offset=offset, sort=sort)


PageDep = Annotated[PageRequest, Depends(page_request)]

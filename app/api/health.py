"""GET /healthz: is the server up and can it reach its database."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Response
from pydantic import BaseModel

from app.api.deps import SessionDep

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    database: str


@router.get("/healthz", responses={503: {"model": Health, "description": "Database unreachable"}})
def healthz(session: SessionDep, response: Response) -> Health:
    """No API key needed: for load balancers and process supervisors."""
    try:
        session.connection().execute(sa.select(1))
    except sa.exc.SQLAlchemyError as exc:
        response.status_code = 503
        return Health(status="unavailable", database=type(exc).__name__)
    return Health(status="ok", database="ok")

"""bench/launch.py's baseline for the accepted request: the least a launch's POST can do on
vdc's stack, served alone.

    python bench/accept_baseline.py DATABASE_URL PORT

FastAPI on uvicorn (uvloop, httptools) as `vdc serve` runs it; one POST route that checks
a bearer key (a dict lookup), validates the same body with pydantic, inserts one row with
SQLAlchemy core on the same database (vdc's engine settings, app/db.py) and answers 202
with it as JSON. No placement, quotas, address, groups, volumes or job: what vdc's accepted
request takes beyond this is what its launch does.
"""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import sqlalchemy as sa
import uvicorn
from fastapi import Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel

from app.db import make_engine

KEY = "bench-baseline-key"
ROWS = sa.Table(
    "accept_baseline",
    sa.MetaData(),
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("image_id", sa.String(64), nullable=False),
    sa.Column("instance_type", sa.String(32), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)


class Launch(BaseModel):
    image_id: str
    instance_type: str = "small"


def caller(authorization: Annotated[str, Header()] = "") -> str:
    if authorization != f"Bearer {KEY}":
        raise HTTPException(401, "a valid API key is required")
    return "a-bench"


def build(url: str) -> FastAPI:
    engine = make_engine(url)
    ROWS.create(engine, checkfirst=True)
    app = FastAPI()

    @app.post("/api/v1/instances", status_code=202)
    def launch(body: Launch, _account: Annotated[str, Depends(caller)]) -> dict[str, Any]:
        row = {
            "id": f"i-{uuid.uuid4().hex[:8]}",
            "image_id": body.image_id,
            "instance_type": body.instance_type,
            "state": "pending",
            "created_at": datetime.now(UTC).replace(tzinfo=None),
        }
        with engine.begin() as connection:
            connection.execute(ROWS.insert().values(**row))
        return row | {"created_at": row["created_at"].isoformat()}

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    url, port = sys.argv[1], int(sys.argv[2])
    app = build(url)
    uvicorn.run(
        app, host="127.0.0.1", port=port, log_level="warning", loop="uvloop", http="httptools"
    )


if __name__ == "__main__":
    main()

"""bench/list.py's baseline: the instance list as a bare ASGI handler under uvicorn.

    python bench/list_baseline.py DATABASE_URL PORT

The same page as `GET /api/v1/instances` (equality filters, sort, limit/offset, total, and
each instance's interfaces, groups and user-data size) from the same tables, with
SQLAlchemy core and json.dumps: no routing, no authentication (`?account_id=` stands in
for the caller's account), no validation, no models. What vdc takes beyond this is what
its layers cost.
"""

from __future__ import annotations

import json
import sys
from typing import Any
from urllib.parse import parse_qs

import sqlalchemy as sa
import uvicorn

from app.db import make_engine
from app.models import HostNode, Instance, NetworkInterface
from app.models.security_group import InstanceSecurityGroup

INSTANCES = Instance.__table__  # type: ignore[attr-defined]
NICS = NetworkInterface.__table__  # type: ignore[attr-defined]
LINKS = InstanceSecurityGroup.__table__  # type: ignore[attr-defined]
HOSTS = HostNode.__table__  # type: ignore[attr-defined]
COLUMNS = [c for c in INSTANCES.c if c.name != "user_data"]


def page(connection: sa.Connection, query: dict[str, str]) -> dict[str, Any]:
    where = [
        INSTANCES.c[name] == query[name]
        for name in ("account_id", "state", "image_id", "host_node_id")
        if name in query
    ]
    limit, offset = int(query.get("limit", 100)), int(query.get("offset", 0))
    sort = query.get("sort", "created_at")
    column = INSTANCES.c[sort.removeprefix("-")]
    order = (
        [column.desc(), INSTANCES.c.id.desc()] if sort.startswith("-") else [column, INSTANCES.c.id]
    )
    total = connection.scalar(sa.select(sa.func.count()).select_from(INSTANCES).where(*where))
    rows = connection.execute(
        sa.select(*COLUMNS, sa.func.coalesce(sa.func.length(INSTANCES.c.user_data), 0))
        .where(*where)
        .order_by(*order)
        .limit(limit)
        .offset(offset)
    ).all()
    ids = [r.id for r in rows]
    nics: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    for nic in connection.execute(
        sa.select(NICS).where(NICS.c.instance_id.in_(ids)).order_by(NICS.c.device_index)
    ):
        nics[nic.instance_id].append(
            {k: getattr(nic, k) for k in ("id", "network_id", "device_index", "mac_address")}
            | {"ip_address": nic.ip_address}
        )
    groups: dict[str, list[str]] = {i: [] for i in ids}
    for link in connection.execute(
        sa.select(LINKS).where(LINKS.c.instance_id.in_(ids)).order_by(LINKS.c.group_id)
    ):
        groups[link.instance_id].append(link.group_id)
    offline = {
        h.id
        for h in connection.execute(
            sa.select(HOSTS.c.id).where(
                HOSTS.c.id.in_({r.host_node_id for r in rows}), HOSTS.c.status == "offline"
            )
        )
    }
    items = []
    for row in rows:
        item = {c.name: getattr(row, c.name) for c in COLUMNS}
        first = nics[row.id][0] if nics[row.id] else {}
        item.update(
            ip_address=first.get("ip_address"),
            mac_address=first.get("mac_address"),
            network_id=first.get("network_id"),
            interfaces=nics[row.id],
            user_data_size=row[-1],
            security_group_ids=groups[row.id],
            host_offline=row.host_node_id in offline,
        )
        items.append(item)
    return {"items": items, "total": total, "limit": limit, "offset": offset}


def make_app(url: str):  # type: ignore[no-untyped-def]
    engine = make_engine(url)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        query = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode()).items()}
        with engine.connect() as connection:
            body = json.dumps(page(connection, query), default=str).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


if __name__ == "__main__":
    uvicorn.run(
        make_app(sys.argv[1]),
        host="127.0.0.1",
        port=int(sys.argv[2]),
        log_level="warning",
        access_log=False,
    )

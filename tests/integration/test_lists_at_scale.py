"""Lists at scale, on SQLite and PostgreSQL: a page of instances costs the same number of
queries whatever its length. bench/list.py measures the speed; these check the behaviour."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from app.config import Settings
from tests.conftest import Keys, bearer
from tests.integration.cloud import Cloud, build_cloud


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """No job worker and no sync: the only queries are the requests' own."""
    return settings.model_copy(update={"workers": 0, "sync_interval": 3600.0})


@pytest.fixture
def cloud(client: TestClient, keys: Keys, test_host_uri, make_disk: Callable[..., Path]) -> Cloud:  # type: ignore[no-untyped-def]
    return build_cloud(client, keys, test_host_uri(), make_disk)


@contextmanager
def statements(engine: sa.Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(_conn, _cursor, statement, _params, _context, _many) -> None:  # type: ignore[no-untyped-def]
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


def test_a_page_costs_the_same_queries_for_2_or_12_instances(cloud: Cloud) -> None:
    engine = cloud.client.app.state.engine  # type: ignore[attr-defined]
    admin = bearer(cloud.admin)
    counts = []
    for wanted in (2, 12):
        while len(cloud.client.get("/api/v1/instances", headers=admin).json()["items"]) < wanted:
            cloud.launch()
        with statements(engine) as seen:
            listed = cloud.client.get("/api/v1/instances", headers=admin).json()
        assert listed["total"] == wanted and len(listed["items"]) == wanted
        counts.append(len(seen))
    assert counts[0] == counts[1], counts
    assert counts[0] <= 10, counts  # key, count, page, interfaces, groups, sizes, hosts


def test_the_list_shows_user_data_sizes_without_loading_user_data(cloud: Cloud) -> None:
    text = "#!/bin/sh\necho héllo\n"  # sizes are in bytes: é is two
    with_data = cloud.launch(user_data=text)
    without = cloud.launch()
    engine = cloud.client.app.state.engine  # type: ignore[attr-defined]
    with statements(engine) as seen:
        listed = cloud.client.get("/api/v1/instances", headers=bearer(cloud.admin)).json()
    sizes = {i["id"]: i["user_data_size"] for i in listed["items"]}
    assert (
        sizes
        == {with_data["id"]: len(text.encode()), without["id"]: 0}
        == {
            with_data["id"]: 22,
            without["id"]: 0,
        }
    )
    page_query = next(s for s in seen if "FROM instances" in s and "LIMIT" in s.upper())
    assert "user_data" not in page_query.split("FROM")[0]
    assert cloud.show(with_data["id"])["user_data_size"] == 22


def test_sort_and_state_filter_use_the_list_convention(cloud: Cloud) -> None:
    first, second = cloud.launch(), cloud.launch()
    admin = bearer(cloud.admin)
    newest = cloud.client.get("/api/v1/instances?sort=-created_at", headers=admin).json()
    assert [i["id"] for i in newest["items"]] == [second["id"], first["id"]]
    pending = cloud.client.get("/api/v1/instances?state=pending&limit=1", headers=admin).json()
    assert (pending["total"], len(pending["items"])) == (2, 1)
    assert cloud.client.get("/api/v1/instances?state=running", headers=admin).json()["total"] == 0

"""Lists at scale, on SQLite and PostgreSQL: a page of instances costs the same number of
queries whatever its length, the web UI's list comes a page at a time (and polls only its
page), and `vdc-manage instance list` prints a page with a note. bench/list.py measures the
speed; these check the behaviour."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from app.config import Settings
from app.web import instances as web_instances
from app.web import session as web_session
from tests.conftest import Keys, bearer
from tests.integration.cloud import Cloud, build_cloud
from tests.integration.test_cli import run


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


def signed_in(cloud: Cloud, settings: Settings, engine: sa.Engine, key: str) -> TestClient:
    from sqlmodel import Session

    with Session(engine) as session:
        cookie = web_session.sign_in(session, settings, key)
        session.commit()
    cloud.client.cookies.set(web_session.COOKIE, cookie)
    return cloud.client


def test_the_web_list_comes_a_page_at_a_time(
    cloud: Cloud, settings: Settings, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web_instances, "PAGE_SIZE", 2)
    launched = [cloud.launch()["id"] for _ in range(5)]  # newest last
    browser = signed_in(cloud, settings, engine, cloud.admin)
    first = browser.get("/instances")
    assert first.status_code == 200
    assert launched[4] in first.text and launched[3] in first.text
    assert launched[2] not in first.text
    assert "1&ndash;2 of 5" in first.text
    assert 'href="/instances?offset=2"' in first.text and "Newer" not in first.text
    assert 'data-live-states="/instances/states?offset=0"' in first.text
    last = browser.get("/instances?offset=4")
    assert launched[0] in last.text and launched[1] not in last.text
    assert 'href="/instances?offset=2"' in last.text and "Older" not in last.text
    # The live states poll covers the page shown, and an instance's page asks for itself.
    polled = browser.get("/instances/states?offset=2").json()
    assert set(polled) == {launched[2], launched[1]}
    assert polled[launched[1]]["state"] == "pending"
    assert set(browser.get(f"/instances/states?id={launched[0]}").json()) == {launched[0]}
    detail = browser.get(f"/instances/{launched[0]}")
    assert f'data-live-state="/instances/states?id={launched[0]}"' in detail.text
    assert browser.get("/instances?offset=-1").status_code == 422


def test_the_web_states_poll_shows_only_the_accounts_own(
    cloud: Cloud, settings: Settings, engine: sa.Engine
) -> None:
    theirs = cloud.launch()
    alice = cloud.keys.new("alice")
    browser = signed_in(cloud, settings, engine, alice)
    assert browser.get(f"/instances/states?id={theirs['id']}").json() == {}
    assert theirs["id"] not in browser.get("/instances").text


def test_vdc_manage_instance_list_prints_a_page_and_says_so(
    cloud: Cloud, settings: Settings
) -> None:
    launched = [cloud.launch()["id"] for _ in range(3)]
    page = run(settings, "vdc-manage", "instance", "list", "--limit", "2")
    assert [i for i in launched if i in page.stdout] == launched[:2]
    assert "1-2 of 3 instances; --offset 2 for the next 2, --all for every one" in page.stderr
    rest = run(settings, "vdc-manage", "instance", "list", "--limit", "2", "--offset", "2")
    assert [i for i in launched if i in rest.stdout] == launched[2:] and rest.stderr == ""
    every = run(settings, "vdc-manage", "instance", "list", "--all", "--sort", "-created_at")
    assert [i for i in reversed(launched) if i in every.stdout] == launched[::-1]
    assert every.stdout.index(launched[2]) < every.stdout.index(launched[0])
    assert every.stderr == ""


def test_the_operators_table_shows_what_the_api_shows(cloud: Cloud, engine: sa.Engine) -> None:
    """vdc-manage's table reads plain rows (app/services/compute/instance_table.py): the
    same page, order and total as the API, the same values, an instance without a NIC too."""
    from sqlmodel import Session

    from app.cli.common import OPERATOR
    from app.services.compute import instance_table
    from app.services.listing import PageRequest

    launched = [cloud.launch()["id"] for _ in range(4)]
    with engine.begin() as connection:
        connection.execute(
            sa.text("DELETE FROM network_interfaces WHERE instance_id = :id"), {"id": launched[1]}
        )
    shown = cloud.client.get(
        "/api/v1/instances?sort=-created_at&limit=3&offset=1", headers=bearer(cloud.admin)
    ).json()
    with Session(engine) as session:
        page = PageRequest(limit=3, offset=1, sort="-created_at")
        table, total = instance_table.table_page(session, OPERATOR, page)
    columns = instance_table.COLUMNS
    assert table == [{c: item[c] for c in columns} for item in shown["items"]]
    assert total == shown["total"] == 4
    assert [row["id"] for row in table] == launched[2::-1]
    assert table[1]["ip_address"] is None and table[0]["ip_address"] is not None

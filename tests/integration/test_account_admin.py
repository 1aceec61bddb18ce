"""Admins disable, enable, demote and delete accounts (SQLite and PostgreSQL): a disabled
account is refused at once by the API and the web UI while its instances keep running;
there is always an enabled admin; deleting keeps the history an account leaves."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Keys, bearer
from tests.integration.cloud import Cloud, build_cloud
from tests.integration.web_forms import login_form, sign_in


@pytest.fixture
def cloud(client: TestClient, keys: Keys, test_host_uri, make_disk: Callable[..., Path]) -> Cloud:  # type: ignore[no-untyped-def]
    return build_cloud(client, keys, test_host_uri(), make_disk)


def patch(client: TestClient, admin: str, account_id: str, **body: Any) -> Any:
    return client.patch(f"/api/v1/accounts/{account_id}", json=body, headers=bearer(admin))


def test_a_disabled_account_is_refused_everywhere_and_its_instances_keep_running(
    cloud: Cloud,
) -> None:
    client, alice = cloud.client, cloud.keys.new("alice")
    alice_id = cloud.keys.ids["alice"]
    instance = cloud.wait_for(cloud.launch(alice)["id"], "running", key=alice)
    sign_in(client, alice)
    assert client.get("/instances").status_code == 200

    disabled = patch(client, cloud.admin, alice_id, disabled=True)
    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["disabled"] is True and disabled.json()["disabled_at"] is not None
    refused = client.get("/api/v1/instances", headers=bearer(alice))
    assert refused.status_code == 401 and "disabled" in refused.json()["detail"]
    launch = client.post(
        "/api/v1/instances", json={"image_id": cloud.image_id}, headers=bearer(alice)
    )
    assert launch.status_code == 401
    assert client.get("/instances", follow_redirects=False).status_code == 303
    again = client.post("/login", data=login_form(client, alice), follow_redirects=False)
    assert again.status_code == 401 and "disabled" in again.text
    # Its instances are left alone: running, same address, no job asked for.
    shown = cloud.show(instance["id"])
    assert (shown["state"], shown["ip_address"]) == ("running", instance["ip_address"])
    listed = client.get("/api/v1/accounts", headers=bearer(cloud.admin)).json()["items"]
    assert next(a for a in listed if a["id"] == alice_id)["disabled"] is True

    enabled = patch(client, cloud.admin, alice_id, disabled=False)
    assert enabled.json()["disabled"] is False and enabled.json()["disabled_at"] is None
    assert client.get("/api/v1/instances", headers=bearer(alice)).status_code == 200
    # The web session that disabling ended stays ended: sign in again.
    assert client.get("/instances", follow_redirects=False).status_code == 303


def test_a_demoted_admin_gets_403_from_admin_routes(client: TestClient, keys: Keys) -> None:
    ops = keys.new("ops", admin=True)
    assert client.get("/api/v1/accounts", headers=bearer(ops)).status_code == 200
    demoted = patch(client, keys.admin, keys.ids["ops"], is_admin=False)
    assert demoted.status_code == 200 and demoted.json()["is_admin"] is False
    assert client.get("/api/v1/accounts", headers=bearer(ops)).status_code == 403
    assert client.get("/api/v1/accounts/me", headers=bearer(ops)).status_code == 200
    assert patch(client, keys.admin, "ops", is_admin=True).status_code == 200  # by name too
    assert client.get("/api/v1/accounts", headers=bearer(ops)).status_code == 200


def test_the_last_enabled_admin_stays(client: TestClient, keys: Keys) -> None:
    root = keys.admin
    for body in ({"is_admin": False}, {"disabled": True}):
        refused = patch(client, root, keys.ids["root"], **body)
        assert refused.status_code == 409, refused.text
        assert "last enabled admin" in refused.json()["detail"]
    gone = client.delete(f"/api/v1/accounts/{keys.ids['root']}", headers=bearer(root))
    assert gone.status_code == 409 and "last enabled admin" in gone.json()["detail"]
    ops = keys.new("ops", admin=True)
    assert patch(client, root, keys.ids["ops"], disabled=True).status_code == 200
    # A disabled admin does not count: root is still the last one who can act.
    assert patch(client, root, keys.ids["root"], is_admin=False).status_code == 409
    assert client.get("/api/v1/accounts", headers=bearer(ops)).status_code == 401
    assert patch(client, root, keys.ids["ops"], disabled=False).status_code == 200
    assert patch(client, ops, keys.ids["root"], is_admin=False).status_code == 200
    assert client.get("/api/v1/accounts", headers=bearer(root)).status_code == 403


def test_the_system_account_cannot_be_disabled_or_promoted(client: TestClient, keys: Keys) -> None:
    for body in ({"disabled": True}, {"is_admin": True}):
        refused = patch(client, keys.admin, "a-shpoolxx", **body)
        assert refused.status_code == 400 and "system account" in refused.json()["detail"]
    assert patch(client, keys.admin, "a-shpoolxx", description="pool").status_code == 200
    assert patch(client, keys.admin, "a-shpoolxx", disabled=None).status_code == 400
    assert patch(client, keys.admin, "a-nobody00", disabled=True).status_code == 404


def test_deleting_an_account_with_history_keeps_the_history(cloud: Cloud) -> None:
    client, alice = cloud.client, cloud.keys.new("alice")
    alice_id = cloud.keys.ids["alice"]
    instance = cloud.wait_for(cloud.launch(alice)["id"], "running", key=alice)
    live = client.delete(f"/api/v1/accounts/{alice_id}", headers=bearer(cloud.admin))
    assert live.status_code == 409
    detail = live.json()["detail"]
    assert "1 live instance" in detail and "disable" in detail, detail

    assert (
        client.delete(f"/api/v1/instances/{instance['id']}", headers=bearer(alice)).status_code
        == 202
    )
    cloud.wait_for(instance["id"], "terminated")
    deleted = client.delete(f"/api/v1/accounts/{alice_id}", headers=bearer(cloud.admin))
    assert deleted.status_code == 204, deleted.text
    assert client.get("/api/v1/accounts/me", headers=bearer(alice)).status_code == 401
    gone = client.get(f"/api/v1/accounts/{alice_id}", headers=bearer(cloud.admin))
    assert gone.status_code == 404
    listed = client.get("/api/v1/accounts", headers=bearer(cloud.admin)).json()["items"]
    assert alice_id not in {a["id"] for a in listed}
    # The terminated instance still names its owner, and the name is free again.
    assert cloud.show(instance["id"])["account_id"] == alice_id
    again = client.post("/api/v1/accounts", json={"name": "alice"}, headers=bearer(cloud.admin))
    assert again.status_code == 201 and again.json()["id"] != alice_id

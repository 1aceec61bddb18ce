"""API keys: listed by id and prefix (never the key), issued, revoked at once (SQLite and
PostgreSQL). A revoked key is refused by the API and ends the web sessions it opened."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.conftest import Keys, bearer
from tests.integration.web_forms import sign_in


def key_ids(client: TestClient, key: str, **params: str) -> list[dict[str, Any]]:
    response = client.get("/api/v1/api_keys", params=params, headers=bearer(key))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def issue(client: TestClient, key: str, **body: str) -> dict[str, Any]:
    response = client.post("/api/v1/api_keys", json=body, headers=bearer(key))
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    issued: dict[str, Any] = response.json()
    return issued


def test_keys_are_listed_by_id_and_prefix_never_the_key(
    client: TestClient, keys: Keys, engine: sa.Engine
) -> None:
    first = keys.new("alice")
    second = issue(client, first, name="laptop")
    assert second["api_key"].startswith("vdc_") and second["name"] == "laptop"
    assert second["account_id"] == keys.ids["alice"] and second["revoked_at"] is None
    listed = key_ids(client, second["api_key"])
    assert [k["name"] for k in listed] == ["", "laptop"]
    assert listed[0]["prefix"] == first[:10] and listed[1]["prefix"] == second["api_key"][:10]
    assert set(listed[0]) == {"id", "account_id", "name", "prefix", "created_at", "revoked_at"}
    text = str(listed)
    assert first not in text and second["api_key"] not in text
    shown = client.get(f"/api/v1/api_keys/{second['id']}", headers=bearer(first)).json()
    assert "api_key" not in shown and shown["prefix"] == listed[1]["prefix"]
    me = client.get("/api/v1/accounts/me", headers=bearer(second["api_key"])).json()
    assert me["name"] == "alice"
    bad = client.post("/api/v1/api_keys", json={"name": "x" * 65}, headers=bearer(first))
    assert bad.status_code == 422


def test_a_revoked_key_is_refused_at_once_and_its_web_session_ends(
    client: TestClient, keys: Keys
) -> None:
    first = keys.new("alice")
    second = issue(client, first, name="spare")["api_key"]
    sign_in(client, first)
    assert client.get("/instances").status_code == 200
    first_id = next(k["id"] for k in key_ids(client, first) if k["name"] == "")

    revoked = client.delete(f"/api/v1/api_keys/{first_id}", headers=bearer(second))
    assert revoked.status_code == 204
    refused = client.get("/api/v1/accounts/me", headers=bearer(first))
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    assert client.get("/instances", follow_redirects=False).status_code == 303
    listed = {k["id"]: k for k in key_ids(client, second)}
    assert listed[first_id]["revoked_at"] is not None  # kept, as a record of the key
    again = client.delete(f"/api/v1/api_keys/{first_id}", headers=bearer(second))
    assert again.status_code == 204  # revoking is idempotent
    assert client.get("/api/v1/accounts/me", headers=bearer(second)).status_code == 200


def test_an_account_may_revoke_its_own_last_key(client: TestClient, keys: Keys) -> None:
    """As a cloud does (AWS lets a user delete every access key): the account is then
    reachable only through an admin, who can issue it a new key."""
    only = keys.new("alice")
    (mine,) = key_ids(client, only)
    assert client.delete(f"/api/v1/api_keys/{mine['id']}", headers=bearer(only)).status_code == 204
    assert client.get("/api/v1/accounts/me", headers=bearer(only)).status_code == 401
    fresh = issue(client, keys.admin, account_id=keys.ids["alice"])
    assert client.get("/api/v1/accounts/me", headers=bearer(fresh["api_key"])).status_code == 200


def test_another_accounts_keys_are_not_found(client: TestClient, keys: Keys) -> None:
    alice, bob = keys.new("alice"), keys.new("bob")
    (alices,) = key_ids(client, alice)
    for method in ("GET", "DELETE"):
        response = client.request(method, f"/api/v1/api_keys/{alices['id']}", headers=bearer(bob))
        assert response.status_code == 404, (method, response.text)
    for_alice = client.post(
        "/api/v1/api_keys", json={"account_id": keys.ids["alice"]}, headers=bearer(bob)
    )
    assert for_alice.status_code == 404
    assert [k["account_id"] for k in key_ids(client, bob)] == [keys.ids["bob"]]
    assert key_ids(client, bob, account_id=keys.ids["alice"]) == []
    assert client.get("/api/v1/accounts/me", headers=bearer(alice)).status_code == 200
    # An admin sees and revokes any account's keys.
    assert [k["id"] for k in key_ids(client, keys.admin, account_id=keys.ids["alice"])] == [
        alices["id"]
    ]
    gone = client.delete(f"/api/v1/api_keys/{alices['id']}", headers=bearer(keys.admin))
    assert gone.status_code == 204
    assert client.get("/api/v1/accounts/me", headers=bearer(alice)).status_code == 401


def test_anonymous_calls_are_401(client: TestClient) -> None:
    assert client.get("/api/v1/api_keys").status_code == 401
    assert client.post("/api/v1/api_keys", json={}).status_code == 401
    assert client.delete("/api/v1/api_keys/key-00000000").status_code == 401

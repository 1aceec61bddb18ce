"""API keys: anonymous 401, bad key 401, user key on admin routes 403, keys stored hashed."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from app.services.identity import api_keys
from tests.conftest import Keys, bearer


class TestAuthentication:
    def test_anonymous_call_is_401_with_bearer_challenge(self, client: TestClient) -> None:
        response = client.get("/api/v1/images")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["type"] == "unauthorized"

    def test_wrong_key_is_401(self, client: TestClient, keys: Keys) -> None:
        keys.new("alice")
        for header in ("Bearer vdc_not-a-real-key", "Bearer something-else", "Basic YTpi"):
            response = client.get("/api/v1/images", headers={"Authorization": header})
            assert response.status_code == 401, header

    def test_key_identifies_its_account(self, client: TestClient, keys: Keys) -> None:
        key = keys.new("alice")
        body = client.get("/api/v1/accounts/me", headers=bearer(key)).json()
        assert body["id"] == keys.ids["alice"]
        assert body["name"] == "alice"
        assert body["is_admin"] is False

    def test_a_request_with_a_body_is_checked_once_before_its_body_is_read(
        self, client: TestClient, keys: Keys, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        key = keys.new("alice")
        checks: list[str] = []
        original = api_keys.authenticate

        def counted(session, presented):  # type: ignore[no-untyped-def]
            checks.append(presented)
            return original(session, presented)

        monkeypatch.setattr(api_keys, "authenticate", counted)
        made = client.post(
            "/api/v1/ssh_key_pairs/generate", json={"name": "laptop"}, headers=bearer(key)
        )
        assert made.status_code == 201, made.text
        assert made.json()["account_id"] == keys.ids["alice"]
        assert checks == [key]  # the guard's check, taken by the route
        listed = client.get("/api/v1/ssh_key_pairs", headers=bearer(key))
        assert [p["name"] for p in listed.json()["items"]] == ["laptop"]
        assert checks == [key, key]  # no body: the route checks it itself

    def test_keys_are_stored_only_as_hashes(
        self, client: TestClient, keys: Keys, engine: sa.Engine
    ) -> None:
        key = keys.new("alice")
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT * FROM api_keys")).all()
        stored = " ".join(str(value) for row in rows for value in row)
        assert key not in stored
        assert key[len("vdc_") :] not in stored


class TestAdminRoutes:
    def test_user_key_gets_403(self, client: TestClient, keys: Keys) -> None:
        key = keys.new("alice")
        assert client.get("/api/v1/accounts", headers=bearer(key)).status_code == 403
        response = client.post("/api/v1/accounts", json={"name": "mallory"}, headers=bearer(key))
        assert response.status_code == 403
        assert "admin" in response.json()["detail"]

    def test_anonymous_gets_401(self, client: TestClient) -> None:
        assert client.get("/api/v1/accounts").status_code == 401

    def test_admin_creates_account_whose_key_works(self, client: TestClient, keys: Keys) -> None:
        response = client.post(
            "/api/v1/accounts",
            json={"name": "bob", "description": "team b"},
            headers=bearer(keys.admin),
        )
        assert response.status_code == 201
        created = response.json()
        assert created["id"].startswith("a-")
        me = client.get("/api/v1/accounts/me", headers=bearer(created["api_key"])).json()
        assert me["id"] == created["id"]
        # The key is shown once: never again in a show or a list.
        shown = client.get(f"/api/v1/accounts/{created['id']}", headers=bearer(keys.admin)).json()
        assert "api_key" not in shown
        listed = client.get("/api/v1/accounts", headers=bearer(keys.admin)).json()
        assert {a["id"] for a in listed["items"]} >= {created["id"], "a-shpoolxx"}
        assert all("api_key" not in a for a in listed["items"])

    def test_duplicate_and_bad_names_are_refused(self, client: TestClient, keys: Keys) -> None:
        keys.new("alice")
        dup = client.post("/api/v1/accounts", json={"name": "alice"}, headers=bearer(keys.admin))
        assert dup.status_code == 409
        bad = client.post(
            "/api/v1/accounts", json={"name": "no spaces"}, headers=bearer(keys.admin)
        )
        assert bad.status_code == 422
        assert bad.json()["type"] == "validation_error"

    def test_system_account_cannot_be_deleted(self, client: TestClient, keys: Keys) -> None:
        before = client.get("/api/v1/accounts/a-shpoolxx", headers=bearer(keys.admin))
        assert before.status_code == 200, before.text
        response = client.delete("/api/v1/accounts/a-shpoolxx", headers=bearer(keys.admin))
        assert response.status_code == 400
        assert response.json()["detail"] == "a-shpoolxx is a system account and cannot be deleted"
        # Refused means untouched: the account is still there, as it was, and still listed.
        after = client.get("/api/v1/accounts/a-shpoolxx", headers=bearer(keys.admin))
        assert after.status_code == 200, after.text
        assert after.json() == before.json()
        listed = client.get("/api/v1/accounts", headers=bearer(keys.admin)).json()
        assert "a-shpoolxx" in {a["id"] for a in listed["items"]}

    def test_deleted_account_key_stops_working(self, client: TestClient, keys: Keys) -> None:
        key = keys.new("alice")
        response = client.delete(
            f"/api/v1/accounts/{keys.ids['alice']}", headers=bearer(keys.admin)
        )
        assert response.status_code == 204
        assert client.get("/api/v1/accounts/me", headers=bearer(key)).status_code == 401


def test_deleting_an_account_takes_its_key_pairs_and_refuses_while_it_owns_instances(
    client: TestClient, keys: Keys, engine: sa.Engine
) -> None:
    key = keys.new("alice")
    assert (
        client.post(
            "/api/v1/ssh_key_pairs/generate", json={"name": "k"}, headers=bearer(key)
        ).status_code
        == 201
    )
    with engine.begin() as conn:  # an instance row of alice's (no host needed to own one)
        conn.execute(
            sa.text(
                "INSERT INTO images (id, account_id, display_name, description, arch,"
                " is_public, state, source, format, virtual_size, file_size, sha256,"
                " file_name, kind, state_reason, progress, created_at, updated_at) VALUES"
                " ('wmi-x0000000', :a, '', '', 'x86_64', false, 'available', 'upload', 'raw',"
                " 512, 512, '', 'x.raw', 'disk', '', 100, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            ),
            {"a": keys.ids["alice"]},
        )
    refused = client.delete(f"/api/v1/accounts/{keys.ids['alice']}", headers=bearer(keys.admin))
    assert refused.status_code == 409 and "image" in refused.json()["detail"]
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM images WHERE id = 'wmi-x0000000'"))
    assert (
        client.delete(
            f"/api/v1/accounts/{keys.ids['alice']}", headers=bearer(keys.admin)
        ).status_code
        == 204
    )
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM ssh_key_pairs")).scalar() == 0

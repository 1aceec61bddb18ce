"""`vdc-manage account` as an operator runs it (real processes): keys listed and revoked,
accounts disabled, enabled, demoted and promoted, with the API seeing each change at once."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from tests.conftest import bearer
from tests.integration.test_cli import run


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    return sqlite_url


def add(settings: Settings, name: str, *extra: str) -> tuple[str, str]:
    out = run(settings, "vdc-manage", "account", "add", name, *extra).stdout
    lines = dict(line.split(": ", 1) for line in out.strip().splitlines())
    return lines["account_id"], lines["api_key"]


def test_keys_are_listed_and_revoked(settings: Settings, client: TestClient) -> None:
    account_id, key = add(settings, "alice")
    second = (
        run(settings, "vdc-manage", "account", "key", "alice", "--name", "ci")
        .stdout.split("api_key: ")[1]
        .strip()
    )
    listing = run(settings, "vdc-manage", "account", "keys", "alice").stdout
    assert key[:10] in listing and second[:10] in listing and "ci" in listing
    assert key not in listing and second not in listing
    row = next(line for line in listing.splitlines() if second[:10] in line)
    key_id = row.split()[0]
    assert key_id.startswith("key-") and "active" in row

    revoked = run(settings, "vdc-manage", "account", "revoke-key", key_id)
    assert f"revoked {key_id}" in revoked.stdout
    assert client.get("/api/v1/accounts/me", headers=bearer(second)).status_code == 401
    assert client.get("/api/v1/accounts/me", headers=bearer(key)).status_code == 200
    after = run(settings, "vdc-manage", "account", "keys", account_id).stdout
    assert "revoked" in next(line for line in after.splitlines() if key_id in line)
    missing = run(settings, "vdc-manage", "account", "revoke-key", "key-nothere0", check=False)
    assert missing.returncode == 1 and "API key key-nothere0 not found" in missing.stderr


def test_disable_enable_demote_promote(settings: Settings, client: TestClient) -> None:
    _, root = add(settings, "root", "--admin")
    _, ops = add(settings, "ops", "--admin")
    run(settings, "vdc-manage", "account", "disable", "ops")
    refused = client.get("/api/v1/accounts/me", headers=bearer(ops))
    assert refused.status_code == 401 and "disabled" in refused.json()["detail"]
    listing = run(settings, "vdc-manage", "account", "list").stdout
    assert "DISABLED" in listing
    assert "True" in next(line for line in listing.splitlines() if " ops " in f"{line} ")
    run(settings, "vdc-manage", "account", "enable", "ops")
    assert client.get("/api/v1/accounts/me", headers=bearer(ops)).status_code == 200

    run(settings, "vdc-manage", "account", "demote", "ops")
    assert client.get("/api/v1/accounts", headers=bearer(ops)).status_code == 403
    last = run(settings, "vdc-manage", "account", "demote", "root", check=False)
    assert last.returncode == 1 and "last enabled admin" in last.stderr
    run(settings, "vdc-manage", "account", "promote", "ops")
    assert client.get("/api/v1/accounts", headers=bearer(ops)).status_code == 200
    run(settings, "vdc-manage", "account", "demote", "root")
    assert client.get("/api/v1/accounts", headers=bearer(root)).status_code == 403

    system = run(settings, "vdc-manage", "account", "disable", "a-shpoolxx", check=False)
    assert system.returncode == 1 and "system account" in system.stderr
    assert "Traceback" not in system.stderr

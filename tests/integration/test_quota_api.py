"""/api/v1/accounts/{id}/quota and the web UI's quota box, on SQLite and PostgreSQL: who may
read and change a quota, PUT and PATCH semantics, and what the usage counts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from tests.conftest import Keys, bearer
from tests.integration.cloud import Cloud, build_cloud
from tests.integration.web_forms import sign_in

NAMES = [
    "instances",
    "cores",
    "memory_mib",
    "volume_gib",
    "images",
    "image_gib",
    "security_groups",
    "key_pairs",
]
DEFAULTS = {
    "instances": 20,
    "cores": 64,
    "memory_mib": 131072,
    "volume_gib": 2048,
    "images": 20,
    "image_gib": 512,
    "security_groups": 50,
    "key_pairs": 50,
}


@pytest.fixture
def cloud(client: TestClient, keys: Keys, test_host_uri, make_disk: Callable[..., Path]) -> Cloud:  # type: ignore[no-untyped-def]
    return build_cloud(client, keys, test_host_uri(), make_disk)


def url(account: str) -> str:
    return f"/api/v1/accounts/{account}/quota"


def limits(quota: dict[str, Any]) -> dict[str, int]:
    return {name: quota[name]["limit"] for name in NAMES}


def test_a_new_account_has_the_settings_defaults_and_no_usage(cloud: Cloud) -> None:
    alice = cloud.keys.new("alice")
    quota = cloud.client.get(url(cloud.keys.ids["alice"]), headers=bearer(alice)).json()
    assert quota["account_id"] == cloud.keys.ids["alice"] and quota["exempt"] is False
    assert set(quota) == {"account_id", "exempt", *NAMES}
    assert limits(quota) == DEFAULTS
    assert all(quota[n]["used"] == 0 and quota[n]["is_default"] for n in NAMES)
    # `me` and the account's name say the same.
    for alias in ("me", "alice"):
        assert cloud.client.get(url(alias), headers=bearer(alice)).json() == quota


def test_usage_counts_what_the_account_holds(cloud: Cloud) -> None:
    alice = cloud.keys.new("alice")
    key = bearer(alice)
    launched = cloud.launch(alice, volumes=[{"size_mib": 512}])  # nano: 1 core, 128 MiB
    cloud.launch(alice, cpu_cores=2, memory_size=256, instance_type=None)
    assert (
        cloud.client.post("/api/v1/volumes", json={"size_gib": 1}, headers=key).status_code == 202
    )
    assert (
        cloud.client.post("/api/v1/security_groups", json={"name": "web"}, headers=key).status_code
        == 201
    )
    assert (
        cloud.client.post(
            "/api/v1/ssh_key_pairs/generate", json={"name": "k"}, headers=key
        ).status_code
        == 201
    )
    used = {
        n: v["used"]
        for n, v in cloud.client.get(url("me"), headers=key).json().items()
        if n in NAMES
    }
    # Two 64 MiB root disks, 512 MiB and 1 GiB: 1.625 GiB; `default` is not a group counted.
    assert used == {
        "instances": 2,
        "cores": 3,
        "memory_mib": 384,
        "volume_gib": 1.625,
        "images": 0,
        "image_gib": 0,
        "security_groups": 1,
        "key_pairs": 1,
    }
    cloud.client.delete(f"/api/v1/instances/{launched['id']}", headers=key)
    after = cloud.client.get(url("me"), headers=key).json()
    assert (after["instances"]["used"], after["cores"]["used"]) == (1, 2)


def test_admins_put_and_patch_and_null_means_the_default(cloud: Cloud) -> None:
    cloud.keys.new("alice")
    admin, target = bearer(cloud.admin), url(cloud.keys.ids["alice"])
    put = cloud.client.put(target, json={"instances": 5, "cores": -1}, headers=admin)
    assert put.status_code == 200, put.text
    assert limits(put.json()) == {**DEFAULTS, "instances": 5, "cores": -1}
    assert not put.json()["instances"]["is_default"] and put.json()["images"]["is_default"]
    patched = cloud.client.patch(target, json={"images": 0, "cores": None}, headers=admin)
    assert limits(patched.json()) == {**DEFAULTS, "instances": 5, "images": 0}
    # PUT replaces: what it leaves out goes back to the default.
    again = cloud.client.put(target, json={"key_pairs": 3}, headers=admin).json()
    assert limits(again) == {**DEFAULTS, "key_pairs": 3}
    assert cloud.client.get(target, headers=admin).json() == again
    # By name too, as vdc-manage takes it.
    assert cloud.client.patch(url("alice"), json={}, headers=admin).json() == again


@pytest.mark.parametrize(
    "body",
    [{"instances": -2}, {"cores": 2**31}, {"instance": 5}, {"images": "many"}, {"images": 1.5}],
)
def test_bad_limits_are_422(cloud: Cloud, body: dict[str, Any]) -> None:
    cloud.keys.new("alice")
    for method in ("PUT", "PATCH"):
        response = cloud.client.request(
            method, url(cloud.keys.ids["alice"]), json=body, headers=bearer(cloud.admin)
        )
        assert response.status_code == 422, response.text


def test_users_read_their_own_quota_only_and_never_change_it(cloud: Cloud) -> None:
    alice, bob = cloud.keys.new("alice"), cloud.keys.new("bob")
    alice_id = cloud.keys.ids["alice"]
    for method in ("PUT", "PATCH"):
        for target in (alice_id, "me", cloud.keys.ids["bob"], "a-nobody00"):
            response = cloud.client.request(
                method, url(target), json={"instances": 1000}, headers=bearer(alice)
            )
            assert response.status_code == 403, (method, target, response.text)
    assert cloud.client.get(url(alice_id), headers=bearer(alice)).json()["instances"]["limit"] == 20
    # Another account's quota is as absent as one that does not exist.
    for target, shown in ((alice_id, alice_id), ("alice", "alice"), ("a-nobody00", "a-nobody00")):
        response = cloud.client.get(url(target), headers=bearer(bob))
        assert response.status_code == 404
        assert response.json() == {"type": "not_found", "detail": f"account {shown} not found"}
    assert cloud.client.get(url("a-shpoolxx"), headers=bearer(bob)).status_code == 404
    assert cloud.client.get(url(alice_id)).status_code == 401


def test_the_system_account_is_exempt_and_cannot_be_given_a_quota(cloud: Cloud) -> None:
    admin = bearer(cloud.admin)
    shared = cloud.client.get(url("a-shpoolxx"), headers=admin).json()
    assert shared["exempt"] is True
    assert set(limits(shared).values()) == {-1}
    assert shared["images"]["used"] == 1  # the cloud's public image
    refused = cloud.client.put(url("a-shpoolxx"), json={"images": 1}, headers=admin)
    assert refused.status_code == 400
    assert refused.json()["detail"] == "a-shpoolxx is the system account: no quota applies to it"
    assert cloud.client.patch(url("a-nobody00"), json={}, headers=admin).status_code == 404


def test_deleting_an_account_deletes_its_quota(cloud: Cloud) -> None:
    cloud.keys.new("alice")
    admin, alice_id = bearer(cloud.admin), cloud.keys.ids["alice"]
    assert (
        cloud.client.patch(url(alice_id), json={"instances": 1}, headers=admin).status_code == 200
    )
    assert cloud.client.delete(f"/api/v1/accounts/{alice_id}", headers=admin).status_code == 204
    assert cloud.client.get(url(alice_id), headers=admin).status_code == 404


# --- the web UI ----------------------------------------------------------------------------


def test_the_instances_page_shows_the_quota_and_a_refused_launch_says_why(
    cloud: Cloud, settings: Settings
) -> None:
    alice = cloud.keys.new("alice")
    cloud.client.patch(
        url(cloud.keys.ids["alice"]), json={"instances": 1}, headers=bearer(cloud.admin)
    )
    cloud.launch(alice)
    csrf = sign_in(cloud.client, alice)
    page = cloud.client.get("/instances").text
    assert '<li class="full">Instances <strong>1</strong> of 1</li>' in page
    assert "<li>Memory (MiB) <strong>128</strong> of 131072</li>" in page
    refused = cloud.client.post(
        "/instances/new",
        data={"csrf": csrf, "image_id": cloud.image_id, "instance_type": "nano"},
    )
    assert refused.status_code == 409
    assert "quota exceeded: 1 instance allowed, 1 in use, 1 asked" in refused.text

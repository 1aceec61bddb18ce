"""Tenancy, as a matrix: for every API route that names a resource, account B acting on
account A's resource gets 404 and changes nothing; user keys get 403 from admin routes;
API keys are stored only as hashes (SQLite and PostgreSQL).

A route added later without a row here fails test_every_resource_route_is_in_the_matrix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.conftest import Keys, bearer
from tests.integration.cloud import OCTET, Cloud, build_cloud
from tests.integration.test_volumes import wait_volume

# (method, path, JSON body) for B; {image} etc. are A's resources.
CROSS_ACCOUNT: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/v1/images/{image}", None),
    ("PATCH", "/api/v1/images/{image}", {"display_name": "mine now"}),
    ("DELETE", "/api/v1/images/{image}", None),
    ("GET", "/api/v1/instances/{instance}", None),
    ("PATCH", "/api/v1/instances/{instance}", {"display_name": "mine now"}),
    ("DELETE", "/api/v1/instances/{instance}", None),
    ("POST", "/api/v1/instances/{instance}/start", None),
    ("POST", "/api/v1/instances/{instance}/stop", None),
    ("POST", "/api/v1/instances/{instance}/poweroff", None),
    ("POST", "/api/v1/instances/{instance}/reboot", None),
    ("POST", "/api/v1/instances/{instance}/eject", None),
    ("POST", "/api/v1/instances/{instance}/image", {"display_name": "mine now"}),
    ("GET", "/api/v1/instances/{instance}/console", None),
    ("POST", "/api/v1/instances/{instance}/console/vnc", None),
    ("GET", "/api/v1/instances/{instance}/volumes", None),
    ("GET", "/api/v1/volumes/{volume}", None),
    ("PATCH", "/api/v1/volumes/{volume}", {"display_name": "mine now"}),
    ("DELETE", "/api/v1/volumes/{volume}", None),
    ("POST", "/api/v1/volumes/{volume}/attach", {"instance_id": "{b_instance}"}),
    ("POST", "/api/v1/volumes/{volume}/detach", None),
    ("GET", "/api/v1/ssh_key_pairs/{keypair}", None),
    ("DELETE", "/api/v1/ssh_key_pairs/{keypair}", None),
    ("GET", "/api/v1/security_groups/{group}", None),
    ("PATCH", "/api/v1/security_groups/{group}", {"rules_text": "any:-1,-1,ip4:0.0.0.0/0"}),
    ("DELETE", "/api/v1/security_groups/{group}", None),
    ("GET", "/api/v1/networks/{network}", None),
    ("GET", "/api/v1/api_keys/{api_key}", None),
    ("DELETE", "/api/v1/api_keys/{api_key}", None),
    ("POST", "/api/v1/api_keys", {"account_id": "{account}", "name": "mine now"}),
    ("GET", "/api/v1/accounts/{account}/quota", None),
    # B's own things pointed at A's: A's instance, image, key pair, group, network.
    ("POST", "/api/v1/volumes/{b_volume}/attach", {"instance_id": "{instance}"}),
    ("POST", "/api/v1/volumes", {"size_mib": 8, "instance_id": "{instance}"}),
    ("POST", "/api/v1/volumes", {"image_id": "{image}"}),
    ("POST", "/api/v1/instances", {"image_id": "{image}", "instance_type": "nano"}),
]
# Launches that name A's key pair, group or network: 404 or 400 (named, never used).
CROSS_ACCOUNT_LAUNCH = [
    {"ssh_key_id": "{keypair}"},
    {"security_group_ids": ["{group}"]},
    {"network_id": "{network}"},
]
ADMIN_ONLY: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/v1/accounts", None),
    ("POST", "/api/v1/accounts", {"name": "sneaky"}),
    ("GET", "/api/v1/accounts/{account}", None),
    ("DELETE", "/api/v1/accounts/{account}", None),
    ("PATCH", "/api/v1/accounts/{account}", {"disabled": True}),
    ("PATCH", "/api/v1/accounts/{account}", {"is_admin": True}),
    ("PUT", "/api/v1/accounts/{account}/quota", {"instances": 1000}),
    ("PATCH", "/api/v1/accounts/{account}/quota", {"instances": 1000}),
    ("GET", "/api/v1/host_nodes", None),
    ("POST", "/api/v1/host_nodes", {"name": "h", "uri": "test:///default"}),
    ("GET", "/api/v1/host_nodes/{host}", None),
    ("PATCH", "/api/v1/host_nodes/{host}", {"enabled": False}),
    ("DELETE", "/api/v1/host_nodes/{host}", None),
    ("POST", "/api/v1/host_nodes/{host}/probe", None),
    ("POST", "/api/v1/networks", {"name": "n", "cidr": "10.99.0.0/24"}),
    ("PATCH", "/api/v1/networks/{network}", {"domain": "evil"}),
    ("DELETE", "/api/v1/networks/{network}", None),
    ("POST", "/api/v1/instance_types", {"name": "huge", "cpu_cores": 64, "memory_size": 65536}),
    ("PATCH", "/api/v1/instance_types/{type}", {"cpu_cores": 64}),
    ("DELETE", "/api/v1/instance_types/{type}", None),
    ("GET", "/metrics", None),  # outside /api/v1, admin-only all the same
]
# Routes naming a resource that are not about another account's resource.
NOT_CROSS_ACCOUNT = {("GET", "/api/v1/accounts/me"), ("GET", "/api/v1/instance_types/{name}")}


@pytest.fixture
def cloud(client: TestClient, keys: Keys, test_host_uri, make_disk: Callable[..., Path]) -> Cloud:  # type: ignore[no-untyped-def]
    return build_cloud(client, keys, test_host_uri(), make_disk)


def ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code in (status, 201, 202), response.text
    return dict(response.json())


@pytest.fixture
def world(cloud: Cloud, make_disk: Callable[..., Path]) -> dict[str, str]:
    """Alice's resources of every kind, Bob's key and a volume and instance of his."""
    client, alice, bob = cloud.client, cloud.keys.new("alice"), cloud.keys.new("bob")
    a, b = bearer(alice), bearer(bob)
    image = ok(
        client.post(
            "/api/v1/images",
            params={"arch": "x86_64"},
            content=make_disk("alice.qcow2", "qcow2", "64M").read_bytes(),
            headers={**a, **OCTET},
        )
    )
    network = ok(
        client.post(
            "/api/v1/networks",
            json={"name": "alices", "cidr": "10.77.0.0/24", "account_id": cloud.keys.ids["alice"]},
            headers=bearer(cloud.admin),
        )
    )
    keypair = ok(client.post("/api/v1/ssh_key_pairs/generate", json={"name": "k"}, headers=a))
    group = ok(client.post("/api/v1/security_groups", json={"name": "g"}, headers=a))
    instance = ok(
        client.post(
            "/api/v1/instances",
            json={"image_id": image["id"], "instance_type": "nano"},
            headers=a,
        )
    )
    cloud.wait_for(instance["id"], "running", key=alice)
    volume = ok(client.post("/api/v1/volumes", json={"size_mib": 8}, headers=a))
    wait_volume(cloud, volume["id"], "available", alice)
    b_instance = cloud.wait_for(cloud.launch(bob)["id"], "running", key=bob)
    b_volume = ok(client.post("/api/v1/volumes", json={"size_mib": 8}, headers=b))
    wait_volume(cloud, b_volume["id"], "available", bob)
    (api_key,) = ok(client.get("/api/v1/api_keys", headers=a))["items"]
    return {
        "alice": alice,
        "bob": bob,
        "image": image["id"],
        "network": network["id"],
        "keypair": keypair["id"],
        "group": group["id"],
        "instance": instance["id"],
        "volume": volume["id"],
        "b_instance": b_instance["id"],
        "b_volume": b_volume["id"],
        "api_key": api_key["id"],
        "account": cloud.keys.ids["alice"],
        "host": cloud.host_id,
        "type": "nano",
    }


def fill(template: Any, world: dict[str, str]) -> Any:
    text = json.dumps(template)
    return json.loads(re.sub(r"\{(\w+)\}", lambda m: world.get(m.group(1), m.group(0)), text))


def snapshot(cloud: Cloud, world: dict[str, str]) -> list[Any]:
    """Everything Alice can see of hers, and of Bob's own volume and instance."""
    a, b = bearer(world["alice"]), bearer(world["bob"])
    paths = [
        ("/api/v1/images/{image}", a),
        ("/api/v1/instances/{instance}", a),
        ("/api/v1/instances/{instance}/volumes", a),
        ("/api/v1/volumes/{volume}", a),
        ("/api/v1/ssh_key_pairs/{keypair}", a),
        ("/api/v1/security_groups/{group}", a),
        ("/api/v1/networks/{network}", a),
        ("/api/v1/accounts/{account}/quota", a),
        ("/api/v1/volumes/{b_volume}", b),
        ("/api/v1/instances/{b_instance}", b),
        ("/api/v1/api_keys", a),
        ("/api/v1/accounts/me", a),
    ]
    return [cloud.client.get(fill(p, world), headers=h).json() for p, h in paths] + [
        cloud.client.get("/api/v1/volumes", headers=b).json()["total"],
        cloud.client.get("/api/v1/instances", headers=b).json()["total"],
    ]


def test_account_b_gets_404_for_everything_of_account_a(
    cloud: Cloud, world: dict[str, str]
) -> None:
    before = snapshot(cloud, world)
    b = bearer(world["bob"])
    for method, path, body in CROSS_ACCOUNT:
        response = cloud.client.request(
            method, fill(path, world), json=fill(body, world) if body else None, headers=b
        )
        assert response.status_code == 404, (method, path, response.text)
        assert world["alice"] not in response.text
    for extra in CROSS_ACCOUNT_LAUNCH:
        response = cloud.client.post(
            "/api/v1/instances",
            json={"image_id": cloud.image_id, "instance_type": "nano", **fill(extra, world)},
            headers=b,
        )
        assert response.status_code in (400, 404), (extra, response.text)
    assert snapshot(cloud, world) == before


def test_user_keys_get_403_from_admin_routes(cloud: Cloud, world: dict[str, str]) -> None:
    def changeable() -> list[Any]:  # what a refused call could have changed
        admin = bearer(cloud.admin)
        listed = cloud.client.get("/api/v1/host_nodes", headers=admin).json()
        hosts = [(h["id"], h["name"], h["uri"], h["enabled"]) for h in listed["items"]]
        quota = cloud.client.get(fill("/api/v1/accounts/{account}/quota", world), headers=admin)
        return [*hosts, quota.json()]

    before = changeable()
    for key in (world["alice"], world["bob"]):
        for method, path, body in ADMIN_ONLY:
            response = cloud.client.request(
                method, fill(path, world), json=body, headers=bearer(key)
            )
            assert response.status_code == 403, (method, path, response.text)
    assert changeable() == before
    me = cloud.client.get("/api/v1/accounts/me", headers=bearer(world["bob"]))
    assert me.status_code == 200 and me.json()["name"] == "bob"


def test_every_resource_route_is_in_the_matrix(client: TestClient) -> None:
    """Read from the OpenAPI document: FastAPI's app.routes holds included routers, not
    routes, in newer versions (walking it found nothing, and this test could not fail)."""
    covered = {(m, p) for m, p, _ in CROSS_ACCOUNT + ADMIN_ONLY}
    normalized = {(m, re.sub(r"\{\w+\}", "{}", p)) for m, p in covered | NOT_CROSS_ACCOUNT}
    routes = [
        (method.upper(), path)
        for path, operations in client.app.openapi()["paths"].items()  # type: ignore[attr-defined]
        for method in operations
        if path.startswith("/api/v1/") and "{" in path
    ]
    assert len(routes) > 30  # the reading itself works
    missing = [
        f"{method} {path}"
        for method, path in routes
        if (method, re.sub(r"\{\w+\}", "{}", path)) not in normalized
    ]
    assert missing == []


def test_api_keys_are_stored_only_as_hashes(
    cloud: Cloud, world: dict[str, str], engine: sa.Engine
) -> None:
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT * FROM api_keys")).all()
    stored = " ".join(str(value) for row in rows for value in row)
    for key in (world["alice"], world["bob"], cloud.admin):
        assert key not in stored
        assert key[len("vdc_") :] not in stored

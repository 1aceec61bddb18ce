"""A small fixture world for instance tests: a test:// host, a network, an image, and
helpers that act through the HTTP API as a user would."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import Keys, bearer

OCTET = {"Content-Type": "application/octet-stream"}


@dataclass
class Cloud:
    client: TestClient
    keys: Keys
    admin: str
    host_id: str
    host_uri: str
    network_id: str
    image_id: str

    def launch(self, key: str | None = None, **body: Any) -> dict[str, Any]:
        body.setdefault("image_id", self.image_id)
        body.setdefault("instance_type", "nano")
        response = self.client.post(
            "/api/v1/instances", json=body, headers=bearer(key or self.admin)
        )
        assert response.status_code == 202, response.text
        return response.json()

    def show(self, instance_id: str, key: str | None = None) -> dict[str, Any]:
        response = self.client.get(
            f"/api/v1/instances/{instance_id}", headers=bearer(key or self.admin)
        )
        assert response.status_code == 200, response.text
        return response.json()

    def action(self, instance_id: str, action: str, key: str | None = None) -> Any:
        return self.client.post(
            f"/api/v1/instances/{instance_id}/{action}", headers=bearer(key or self.admin)
        )

    def wait_for(
        self, instance_id: str, state: str, timeout: float = 60, key: str | None = None
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            current = self.show(instance_id, key)
            if current["state"] == state:
                return current
            assert current["state"] != "error" or state == "error", current
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{instance_id} stayed {current['state']}, wanted {state}: {current}"
                )
            time.sleep(0.05)


def build_cloud(
    client: TestClient,
    keys: Keys,
    host_uri: str,
    make_disk: Callable[..., Path],
    cidr: str = "10.10.0.0/24",
) -> Cloud:
    admin = keys.admin
    host = client.post(
        "/api/v1/host_nodes", json={"name": "host1", "uri": host_uri}, headers=bearer(admin)
    )
    assert host.status_code == 201, host.text
    network = client.post(
        "/api/v1/networks",
        json={
            "name": "default",
            "cidr": cidr,
            "dns_servers": ["10.10.0.1"],
            "domain": "vdc.test",
            "is_default": True,
        },
        headers=bearer(admin),
    )
    assert network.status_code == 201, network.text
    disk = make_disk("guest.qcow2", "qcow2", "64M")
    image = client.post(
        "/api/v1/images",
        params={"arch": "x86_64", "is_public": "true", "account_id": "a-shpoolxx"},
        content=disk.read_bytes(),
        headers={**bearer(admin), **OCTET},
    )
    assert image.status_code == 201, image.text
    return Cloud(
        client, keys, admin, host.json()["id"], host_uri, network.json()["id"], image.json()["id"]
    )

"""Admin resources behind instances: host nodes, networks and instance types."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Keys, bearer
from tests.integration.cloud import build_cloud


class TestHostNodes:
    def test_add_reads_capacity_from_libvirt(
        self, client: TestClient, keys: Keys, test_host_uri
    ) -> None:  # type: ignore[no-untyped-def]
        uri = test_host_uri("h", cpus=12, memory_mib=24576)
        response = client.post(
            "/api/v1/host_nodes", json={"name": "kvm1", "uri": uri}, headers=bearer(keys.admin)
        )
        assert response.status_code == 201, response.text
        host = response.json()
        assert host["id"].startswith("hn-")
        assert (host["cpu_cores"], host["memory_size"], host["status"]) == (12, 24576, "online")
        assert (host["cpu_cores_used"], host["memory_size_used"]) == (0, 0)

    def test_given_capacity_wins_and_unreachable_hosts_are_offline(
        self, client: TestClient, keys: Keys, tmp_path: Path
    ) -> None:
        missing = f"test://{tmp_path}/no-such-node.xml"
        refused = client.post(
            "/api/v1/host_nodes", json={"name": "x", "uri": missing}, headers=bearer(keys.admin)
        )
        assert refused.status_code == 400
        assert "cannot read the capacity" in refused.json()["detail"]
        offline = client.post(
            "/api/v1/host_nodes",
            json={"name": "x", "uri": missing, "cpu_cores": 4, "memory_size": 4096},
            headers=bearer(keys.admin),
        ).json()
        assert (offline["status"], offline["cpu_cores"]) == ("offline", 4)
        assert offline["status_reason"]

    def test_disable_enable_delete_and_refusals(
        self, client: TestClient, keys: Keys, test_host_uri
    ) -> None:  # type: ignore[no-untyped-def]
        admin, user = keys.admin, keys.new("alice")
        uri = test_host_uri()
        host = client.post(
            "/api/v1/host_nodes", json={"name": "kvm1", "uri": uri}, headers=bearer(admin)
        ).json()
        url = f"/api/v1/host_nodes/{host['id']}"
        assert (
            client.post(
                "/api/v1/host_nodes",
                json={"name": "kvm1", "uri": "test:///other"},
                headers=bearer(admin),
            ).status_code
            == 409
        )
        assert (
            client.post(
                "/api/v1/host_nodes", json={"name": "kvm2", "uri": uri}, headers=bearer(admin)
            ).status_code
            == 409
        )
        assert client.get("/api/v1/host_nodes", headers=bearer(user)).status_code == 403
        assert client.get("/api/v1/host_nodes").status_code == 401
        assert (
            client.patch(url, json={"enabled": False}, headers=bearer(admin)).json()["enabled"]
            is False
        )
        assert (
            client.patch(url, json={"enabled": True}, headers=bearer(admin)).json()["enabled"]
            is True
        )
        assert client.delete(url, headers=bearer(admin)).status_code == 204
        assert client.get(url, headers=bearer(admin)).status_code == 404

    def test_host_with_instances_cannot_be_deleted(
        self, client: TestClient, keys: Keys, test_host_uri, make_disk: Callable[..., Path]
    ) -> None:  # type: ignore[no-untyped-def]
        cloud = build_cloud(client, keys, test_host_uri(), make_disk)
        cloud.launch()
        refused = client.delete(f"/api/v1/host_nodes/{cloud.host_id}", headers=bearer(cloud.admin))
        assert refused.status_code == 409
        shown = client.get(
            f"/api/v1/host_nodes/{cloud.host_id}", headers=bearer(cloud.admin)
        ).json()
        assert (shown["cpu_cores_used"], shown["memory_size_used"]) == (1, 128)


class TestScheduler:
    def test_spreads_and_skips_disabled_offline_and_full_hosts(
        self, client: TestClient, keys: Keys, test_host_uri, make_disk: Callable[..., Path]
    ) -> None:  # type: ignore[no-untyped-def]
        cloud = build_cloud(client, keys, test_host_uri("a", cpus=4, memory_mib=1024), make_disk)
        admin = cloud.admin
        second = client.post(
            "/api/v1/host_nodes",
            json={"name": "host2", "uri": test_host_uri("b", cpus=4, memory_mib=1024)},
            headers=bearer(admin),
        ).json()
        placed = [
            cloud.launch(instance_type=None, cpu_cores=1, memory_size=256)["host_node_id"]
            for _ in range(4)
        ]
        assert sorted(placed) == sorted([cloud.host_id, cloud.host_id, second["id"], second["id"]])

        client.patch(
            f"/api/v1/host_nodes/{second['id']}", json={"enabled": False}, headers=bearer(admin)
        )
        assert (
            cloud.launch(instance_type=None, cpu_cores=1, memory_size=256)["host_node_id"]
            == cloud.host_id
        )
        # Host a is now full (4 x 256 MiB... 3 instances = 768 MiB, one more fits), then no room.
        assert (
            cloud.launch(instance_type=None, cpu_cores=1, memory_size=256)["host_node_id"]
            == cloud.host_id
        )
        full = client.post(
            "/api/v1/instances",
            json={"image_id": cloud.image_id, "cpu_cores": 1, "memory_size": 256},
            headers=bearer(admin),
        )
        assert full.status_code == 409
        assert "no host has room for 1 core(s) and 256 MiB" in full.json()["detail"]

    def test_no_online_host_is_a_clear_409(
        self, client: TestClient, keys: Keys, test_host_uri, make_disk: Callable[..., Path]
    ) -> None:  # type: ignore[no-untyped-def]
        cloud = build_cloud(client, keys, test_host_uri(), make_disk)
        client.patch(
            f"/api/v1/host_nodes/{cloud.host_id}",
            json={"enabled": False},
            headers=bearer(cloud.admin),
        )
        refused = client.post(
            "/api/v1/instances",
            json={"image_id": cloud.image_id, "instance_type": "nano"},
            headers=bearer(cloud.admin),
        )
        assert refused.status_code == 409
        assert "no host is available" in refused.json()["detail"]


class TestNetworks:
    def test_defaults_and_visibility(self, client: TestClient, keys: Keys) -> None:
        admin, alice, bob = keys.admin, keys.new("alice"), keys.new("bob")
        shared = client.post(
            "/api/v1/networks", json={"name": "pub", "cidr": "10.1.0.0/24"}, headers=bearer(admin)
        )
        assert shared.status_code == 201, shared.text
        body = shared.json()
        assert (body["gateway"], body["dhcp_start"], body["dhcp_end"]) == (
            "10.1.0.1",
            "10.1.0.2",
            "10.1.0.254",
        )
        assert body["id"].startswith("nw-") and len(body["bridge"]) <= 15
        private = client.post(
            "/api/v1/networks",
            json={"name": "alice-only", "cidr": "10.2.0.0/24", "account_id": keys.ids["alice"]},
            headers=bearer(admin),
        ).json()
        seen_by_alice = {
            n["id"] for n in client.get("/api/v1/networks", headers=bearer(alice)).json()["items"]
        }
        seen_by_bob = {
            n["id"] for n in client.get("/api/v1/networks", headers=bearer(bob)).json()["items"]
        }
        assert seen_by_alice == {body["id"], private["id"]}
        assert seen_by_bob == {body["id"]}
        assert (
            client.get(f"/api/v1/networks/{private['id']}", headers=bearer(bob)).status_code == 404
        )
        assert (
            client.post(
                "/api/v1/networks", json={"name": "n", "cidr": "10.3.0.0/24"}, headers=bearer(alice)
            ).status_code
            == 403
        )

    @pytest.mark.parametrize(
        ("body", "status", "fragment"),
        [
            ({"cidr": "10.1.0.0/16"}, 409, "overlaps"),
            ({"cidr": "10.1.0.128/25"}, 409, "overlaps"),
            ({"cidr": "10.9.0.5/24"}, 400, "not an IPv4 network"),
            ({"cidr": "banana"}, 400, "not an IPv4 network"),
            ({"cidr": "10.9.0.0/30"}, 400, "too small"),
            ({"cidr": "10.9.0.0/24", "dhcp_start": "10.9.1.10"}, 400, "outside 10.9.0.0/24"),
            ({"cidr": "10.9.0.0/24", "dhcp_end": "10.9.0.255"}, 400, "outside 10.9.0.0/24"),
            ({"cidr": "10.9.0.0/24", "gateway": "10.8.0.1"}, 400, "outside 10.9.0.0/24"),
            (
                {"cidr": "10.9.0.0/24", "dhcp_start": "10.9.0.50", "dhcp_end": "10.9.0.40"},
                400,
                "after dhcp_end",
            ),
            (
                {"cidr": "10.9.0.0/24", "gateway": "10.9.0.50", "dhcp_start": "10.9.0.10"},
                400,
                "inside the DHCP range",
            ),
            ({"cidr": "10.9.0.0/24", "dns_servers": ["dns.example"]}, 400, "not an IPv4 address"),
        ],
    )
    def test_refusals(
        self, client: TestClient, keys: Keys, body: dict, status: int, fragment: str
    ) -> None:
        client.post(
            "/api/v1/networks",
            json={"name": "existing", "cidr": "10.1.0.0/24"},
            headers=bearer(keys.admin),
        )
        response = client.post(
            "/api/v1/networks", json={"name": "new", **body}, headers=bearer(keys.admin)
        )
        assert response.status_code == status, response.text
        assert fragment in response.json()["detail"]

    def test_network_in_use_cannot_be_deleted(
        self, client: TestClient, keys: Keys, test_host_uri, make_disk: Callable[..., Path]
    ) -> None:  # type: ignore[no-untyped-def]
        cloud = build_cloud(client, keys, test_host_uri(), make_disk)
        instance = cloud.launch()
        url = f"/api/v1/networks/{cloud.network_id}"
        refused = client.delete(url, headers=bearer(cloud.admin))
        assert refused.status_code == 409 and "in use" in refused.json()["detail"]
        assert client.get(url, headers=bearer(cloud.admin)).json()["addresses_in_use"] == 1
        client.delete(f"/api/v1/instances/{instance['id']}", headers=bearer(cloud.admin))
        cloud.wait_for(instance["id"], "terminated")
        assert client.delete(url, headers=bearer(cloud.admin)).status_code == 204
        from hypervisor.connection import POOL

        assert f"vdc-{cloud.network_id}" not in POOL.get(cloud.host_uri).listNetworks()

    def test_one_default_network(self, client: TestClient, keys: Keys) -> None:
        a = client.post(
            "/api/v1/networks",
            json={"name": "a", "cidr": "10.1.0.0/24", "is_default": True},
            headers=bearer(keys.admin),
        ).json()
        b = client.post(
            "/api/v1/networks",
            json={"name": "b", "cidr": "10.2.0.0/24", "is_default": True},
            headers=bearer(keys.admin),
        ).json()
        assert (
            client.get(f"/api/v1/networks/{a['id']}", headers=bearer(keys.admin)).json()[
                "is_default"
            ]
            is False
        )
        assert (
            client.get(f"/api/v1/networks/{b['id']}", headers=bearer(keys.admin)).json()[
                "is_default"
            ]
            is True
        )


class TestInstanceTypes:
    def test_seeded_types_and_admin_crud(self, client: TestClient, keys: Keys) -> None:
        user = keys.new("alice")
        names = [
            t["name"]
            for t in client.get("/api/v1/instance_types", headers=bearer(user)).json()["items"]
        ]
        assert names[:5] == ["nano", "small", "medium", "large", "xlarge"]
        body = {"name": "tiny", "cpu_cores": 1, "memory_size": 64, "root_disk_size": 1}
        assert (
            client.post("/api/v1/instance_types", json=body, headers=bearer(user)).status_code
            == 403
        )
        assert (
            client.post("/api/v1/instance_types", json=body, headers=bearer(keys.admin)).status_code
            == 201
        )
        assert (
            client.post("/api/v1/instance_types", json=body, headers=bearer(keys.admin)).status_code
            == 409
        )
        changed = client.patch(
            "/api/v1/instance_types/tiny", json={"memory_size": 96}, headers=bearer(keys.admin)
        )
        assert changed.json()["memory_size"] == 96
        assert (
            client.post(
                "/api/v1/instance_types",
                json={**body, "name": "big", "cpu_cores": 0},
                headers=bearer(keys.admin),
            ).status_code
            == 422
        )
        assert (
            client.delete("/api/v1/instance_types/tiny", headers=bearer(keys.admin)).status_code
            == 204
        )
        assert client.get("/api/v1/instance_types/tiny", headers=bearer(user)).status_code == 404

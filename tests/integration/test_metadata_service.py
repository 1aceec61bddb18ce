"""The metadata app against launched instances (test:// host), on both databases: asked as
a guest asks, from the instance's address at its network's gateway (the DNAT target)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from metadata.app import create_metadata_app
from metadata.resolver import sign
from tests.conftest import Keys, bearer
from tests.integration.cloud import Cloud, build_cloud

GATEWAY = "http://10.10.0.1:8775"
PROXY_SECRET = "proxy-secret"


@pytest.fixture
def cloud(client: TestClient, keys: Keys, test_host_uri, make_disk: Callable[..., Path]) -> Cloud:  # type: ignore[no-untyped-def]
    return build_cloud(client, keys, test_host_uri(), make_disk)


@pytest.fixture
def guest(engine: sa.Engine):  # type: ignore[no-untyped-def]
    """guest(ip) -> an HTTP client that looks like the guest with that address."""
    app = create_metadata_app(engine, "vdc-1", token_secret="t" * 32, proxy_secret=PROXY_SECRET)

    def make(ip: str, base_url: str = GATEWAY) -> TestClient:
        return TestClient(app, base_url=base_url, client=(ip, 40000), follow_redirects=False)

    return make


def key_pair(cloud: Cloud, key: str) -> dict:  # type: ignore[type-arg]
    response = cloud.client.post(
        "/api/v1/ssh_key_pairs/generate", json={"name": "laptop"}, headers=bearer(key)
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


class TestAnswers:
    def test_every_key_matches_the_api(self, cloud: Cloud, guest) -> None:  # type: ignore[no-untyped-def]
        alice = cloud.keys.new("alice")
        pair = key_pair(cloud, alice)
        launched = cloud.launch(
            alice, hostname="web1", user_data="#!/bin/sh\necho hi\n", ssh_key_id=pair["id"]
        )
        running = cloud.wait_for(launched["id"], "running", key=alice)
        me = guest(running["ip_address"])
        get = lambda path: me.get(path)  # noqa: E731
        assert get("/").text.splitlines()[-1] == "latest"
        assert "2009-04-04" in get("/").text
        # As EC2: the version's listing has no trailing slashes; those further down do.
        assert get("/latest/").text == "dynamic\nmeta-data\nuser-data"
        assert get("/latest/meta-data/").text.splitlines()[:2] == ["ami-id", "wmi-id"]
        assert "block-device-mapping/" in get("/latest/meta-data/").text.splitlines()
        expected = {
            "instance-id": running["id"],
            "ami-id": cloud.image_id,
            "wmi-id": cloud.image_id,
            "local-ipv4": running["ip_address"],
            "mac": running["mac_address"],
            "local-hostname": "web1.vdc.test",
            "instance-type": "nano",
            "placement/availability-zone": "vdc-1a",
            "x-gateway": "10.10.0.1",
            "x-netmask": "255.255.255.0",
            "x-dns": "10.10.0.1",
            "public-keys/": "0=laptop",
            "public-keys/0/openssh-key": pair["public_key"] + "\n",
        }
        for key, value in expected.items():
            for version in ("latest", "2009-04-04"):
                response = get(f"/{version}/meta-data/{key}")
                assert (response.status_code, response.text) == (200, value), (version, key)
                assert response.headers["content-type"].startswith("text/plain")
        assert get("/latest/user-data").content == b"#!/bin/sh\necho hi\n"
        mac_dir = f"/latest/meta-data/network/interfaces/macs/{running['mac_address']}"
        assert get(f"{mac_dir}/subnet-ipv4-cidr-block").text == "10.10.0.0/24"
        document = json.loads(get("/latest/dynamic/instance-identity/document").text)
        assert (document["instanceId"], document["privateIp"], document["accountId"]) == (
            running["id"],
            running["ip_address"],
            cloud.keys.ids["alice"],
        )

    def test_slashes_never_redirect(self, cloud: Cloud, guest) -> None:  # type: ignore[no-untyped-def]
        me = guest(cloud.wait_for(cloud.launch()["id"], "running")["ip_address"])
        assert me.get("/latest/meta-data/instance-id/").status_code == 200
        listing = me.get("/latest/meta-data/placement")
        assert (listing.status_code, listing.text) == (200, "availability-zone\nregion")
        assert me.get("/latest/meta-data").status_code == 200
        assert me.get("/latest").status_code == 200

    def test_no_user_data_is_404(self, cloud: Cloud, guest) -> None:  # type: ignore[no-untyped-def]
        me = guest(cloud.wait_for(cloud.launch()["id"], "running")["ip_address"])
        assert me.get("/latest/user-data").status_code == 404
        assert me.get("/latest/").text == "dynamic\nmeta-data"

    def test_one_instance_never_sees_another_instances_user_data(self, cloud: Cloud, guest) -> None:  # type: ignore[no-untyped-def]
        a = cloud.wait_for(cloud.launch(user_data="secret-a")["id"], "running")
        b = cloud.wait_for(cloud.launch(user_data="secret-b")["id"], "running")
        assert guest(a["ip_address"]).get("/latest/user-data").text == "secret-a"
        assert guest(b["ip_address"]).get("/latest/user-data").text == "secret-b"


class TestWhoIsAsking:
    def test_unknown_terminated_and_wrong_gateway_are_404(self, cloud: Cloud, guest) -> None:  # type: ignore[no-untyped-def]
        running = cloud.wait_for(cloud.launch()["id"], "running")
        assert guest("10.10.0.250").get("/latest/meta-data/instance-id").status_code == 404
        # Same address, but arriving elsewhere than the network's gateway: not a guest.
        elsewhere = guest(running["ip_address"], base_url="http://192.168.77.1:8775")
        assert elsewhere.get("/latest/meta-data/instance-id").status_code == 404
        cloud.client.delete(f"/api/v1/instances/{running['id']}", headers=bearer(cloud.admin))
        cloud.wait_for(running["id"], "terminated")
        # The service learns of changes in the background, within a fraction of a second.
        deadline = time.monotonic() + 30  # generous: the answer is waited for, not the clock
        while guest(running["ip_address"]).get("/latest/meta-data/instance-id").status_code != 404:
            assert time.monotonic() < deadline, "a terminated instance's address still answers"
            time.sleep(0.05)

    def test_forwarded_headers_count_only_when_signed(self, cloud: Cloud, guest) -> None:  # type: ignore[no-untyped-def]
        running = cloud.wait_for(cloud.launch()["id"], "running")
        proxy = guest("10.99.0.9", base_url="http://10.99.0.1:8775")  # a proxy elsewhere
        unsigned = proxy.get(
            "/latest/meta-data/instance-id", headers={"X-Forwarded-For": running["ip_address"]}
        )
        assert unsigned.status_code == 404
        signed = proxy.get(
            "/latest/meta-data/instance-id",
            headers={
                "X-Forwarded-For": running["ip_address"],
                "X-Instance-ID": running["id"],
                "X-Instance-ID-Signature": sign(PROXY_SECRET.encode(), running["id"]),
            },
        )
        assert (signed.status_code, signed.text) == (200, running["id"])
        # A guest claiming another's address through the header gets its own answer only.
        other = cloud.wait_for(cloud.launch()["id"], "running")
        me = guest(other["ip_address"])
        claimed = me.get(
            "/latest/meta-data/instance-id", headers={"X-Forwarded-For": running["ip_address"]}
        )
        assert claimed.text == other["id"]

    def test_a_signed_forward_whose_instance_id_does_not_match_the_address_is_404(
        self,
        cloud: Cloud,
        guest,  # type: ignore[no-untyped-def]
    ) -> None:
        a = cloud.wait_for(cloud.launch(user_data="secret-a")["id"], "running")
        b = cloud.wait_for(cloud.launch(user_data="secret-b")["id"], "running")
        proxy = guest("10.99.0.9", base_url="http://10.99.0.1:8775")  # a proxy elsewhere

        def forwarded(instance_id: str, address: str) -> dict[str, str]:
            # A valid signature: the proxy vouches for the instance id, not for the pair.
            return {
                "X-Forwarded-For": address,
                "X-Instance-ID": instance_id,
                "X-Instance-ID-Signature": sign(PROXY_SECRET.encode(), instance_id),
            }

        # The pair that matches is answered (what the mismatches below are compared to).
        matched = proxy.get("/latest/user-data", headers=forwarded(a["id"], a["ip_address"]))
        assert (matched.status_code, matched.text) == (200, "secret-a")
        ttl = {"X-aws-ec2-metadata-token-ttl-seconds": "60"}
        for instance_id, address in (
            (a["id"], b["ip_address"]),  # a's id, b's address
            (b["id"], a["ip_address"]),
            ("i-nothere0", a["ip_address"]),  # no such instance
            (a["id"], "10.10.0.250"),  # no instance at that address
        ):
            headers = forwarded(instance_id, address)
            for path in ("/latest/meta-data/instance-id", "/latest/user-data"):
                answer = proxy.get(path, headers=headers)
                assert answer.status_code == 404, (instance_id, address, path, answer.text)
            token = proxy.put("/latest/api/token", headers={**headers, **ttl})
            assert token.status_code == 403, (instance_id, address, token.text)


class TestImdsV2:
    def test_token_flow(self, cloud: Cloud, guest) -> None:  # type: ignore[no-untyped-def]
        running = cloud.wait_for(cloud.launch()["id"], "running")
        me = guest(running["ip_address"])
        issued = me.put(
            "/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "21600"}
        )
        assert issued.status_code == 200
        assert issued.headers["x-aws-ec2-metadata-token-ttl-seconds"] == "21600"
        token = issued.text
        with_token = me.get(
            "/latest/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": token}
        )
        assert with_token.text == running["id"]
        assert (
            me.get(
                "/latest/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": "garbage"}
            ).status_code
            == 401
        )
        # Tokens are bound to the instance that asked for them.
        other = guest(cloud.wait_for(cloud.launch()["id"], "running")["ip_address"])
        assert (
            other.get(
                "/latest/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": token}
            ).status_code
            == 401
        )

    @pytest.mark.parametrize(
        ("ttl", "status"), [("0", 400), ("21601", 400), ("abc", 400), (None, 400), ("1", 200)]
    )
    def test_ttl_bounds(self, cloud: Cloud, guest, ttl: str | None, status: int) -> None:  # type: ignore[no-untyped-def]
        me = guest(cloud.wait_for(cloud.launch()["id"], "running")["ip_address"])
        headers = {} if ttl is None else {"X-aws-ec2-metadata-token-ttl-seconds": ttl}
        assert me.put("/latest/api/token", headers=headers).status_code == status

    def test_token_put_refusals_are_never_404(self, cloud: Cloud, guest) -> None:  # type: ignore[no-untyped-def]
        me = guest(cloud.wait_for(cloud.launch()["id"], "running")["ip_address"])
        ttl = {"X-aws-ec2-metadata-token-ttl-seconds": "60"}
        assert me.put("/2009-04-04/api/token", headers=ttl).status_code == 403
        assert (
            me.put("/latest/api/token", headers={**ttl, "X-Forwarded-For": "1.2.3.4"}).status_code
            == 403
        )
        assert guest("10.10.0.251").put("/latest/api/token", headers=ttl).status_code == 403

    def test_required_tokens_set_at_launch_and_changed_later(self, cloud: Cloud, guest) -> None:  # type: ignore[no-untyped-def]
        running = cloud.wait_for(cloud.launch(http_tokens="required")["id"], "running")
        assert running["http_tokens"] == "required"
        me = guest(running["ip_address"])
        assert me.get("/latest/meta-data/instance-id").status_code == 401
        token = me.put(
            "/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}
        ).text
        assert (
            me.get(
                "/latest/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": token}
            ).status_code
            == 200
        )
        changed = cloud.client.patch(
            f"/api/v1/instances/{running['id']}",
            json={"http_tokens": "optional"},
            headers=bearer(cloud.admin),
        )
        assert changed.json()["http_tokens"] == "optional"
        # Leases (with their token option) are cached for a second at most.
        deadline = time.monotonic() + 30  # generous: the answer is waited for, not the clock
        while me.get("/latest/meta-data/instance-id").status_code != 200:
            assert time.monotonic() < deadline, "the change never applied"
            time.sleep(0.1)
        bad = cloud.client.patch(
            f"/api/v1/instances/{running['id']}",
            json={"http_tokens": "sometimes"},
            headers=bearer(cloud.admin),
        )
        assert bad.status_code == 422


class TestBadInput:
    @pytest.mark.parametrize(
        "path",
        [
            "/latest/meta-data/../../etc/passwd",
            "/latest/meta-data/%2e%2e/%2e%2e",
            "/latest/meta-data/" + "a/" * 500,
        ],
    )
    def test_traversal_and_deep_paths_are_404(self, cloud: Cloud, guest, path: str) -> None:  # type: ignore[no-untyped-def]
        me = guest(cloud.wait_for(cloud.launch()["id"], "running")["ip_address"])
        assert me.get(path).status_code == 404
        assert me.get("/latest/meta-data/instance-id").status_code == 200

    def test_other_methods_and_huge_headers(self, cloud: Cloud, guest) -> None:  # type: ignore[no-untyped-def]
        me = guest(cloud.wait_for(cloud.launch()["id"], "running")["ip_address"])
        assert me.post("/latest/meta-data/instance-id").status_code == 405
        huge = me.get(
            "/latest/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": "x" * 60000}
        )
        assert huge.status_code == 401
        assert me.get("/latest/meta-data/instance-id").status_code == 200

    def test_launch_with_another_accounts_key_pair_is_404(self, cloud: Cloud) -> None:
        alice, bob = cloud.keys.new("alice"), cloud.keys.new("bob")
        pair = key_pair(cloud, alice)
        refused = cloud.client.post(
            "/api/v1/instances",
            json={"image_id": cloud.image_id, "instance_type": "nano", "ssh_key_id": pair["id"]},
            headers=bearer(bob),
        )
        assert refused.status_code == 404

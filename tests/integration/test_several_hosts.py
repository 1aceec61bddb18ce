"""Several hosts as the API shows them, on libvirt's test driver (real guests on two hosts:
tests/e2e/test_several_hosts_e2e.py): tunnel addresses, virt types, an admin pinning a
launch, instances of an offline host, a guest qemu paused by itself, an image's copies."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hypervisor.driver import HostDriver
from hypervisor.errors import HostUnreachable
from hypervisor.specs import DomainInfo
from tests.conftest import Keys, bearer
from tests.integration.cloud import Cloud, build_cloud

HOSTS = "/api/v1/host_nodes"


@pytest.fixture
def cloud(client: TestClient, keys: Keys, test_host_uri, make_disk: Callable[..., Path]) -> Cloud:  # type: ignore[no-untyped-def]
    return build_cloud(client, keys, test_host_uri("host1"), make_disk)


def add_host(cloud: Cloud, uri: str, name: str, **extra: object) -> dict:  # type: ignore[type-arg]
    added = cloud.client.post(
        HOSTS, json={"name": name, "uri": uri, **extra}, headers=bearer(cloud.admin)
    )
    assert added.status_code == 201, added.text
    return dict(added.json())


def test_hosts_show_their_tunnel_address_and_virt_type(cloud: Cloud, test_host_uri) -> None:  # type: ignore[no-untyped-def]
    host = add_host(cloud, test_host_uri("host2"), "host2", tunnel_ip="192.0.2.7")
    assert (host["tunnel_ip"], host["virt_type"]) == ("192.0.2.7", "test")
    assert host["virt_type_reason"] == "libvirt's test driver"
    refused = cloud.client.post(
        HOSTS,
        json={"name": "h3", "uri": test_host_uri("host3"), "tunnel_ip": "not-an-address"},
        headers=bearer(cloud.admin),
    )
    assert refused.status_code == 400 and "not an IP address" in refused.json()["detail"]
    changed = cloud.client.patch(
        f"{HOSTS}/{host['id']}", json={"tunnel_ip": "192.0.2.8"}, headers=bearer(cloud.admin)
    )
    assert changed.json()["tunnel_ip"] == "192.0.2.8"
    probed = cloud.client.post(f"{HOSTS}/{host['id']}/probe", headers=bearer(cloud.admin))
    assert probed.status_code == 200 and probed.json()["virt_type"] == "test"
    user = cloud.keys.new("alice")
    assert cloud.client.post(f"{HOSTS}/{host['id']}/probe", headers=bearer(user)).status_code == 403


def test_an_admin_pins_a_launch_to_a_host(cloud: Cloud, test_host_uri) -> None:  # type: ignore[no-untyped-def]
    small = add_host(cloud, test_host_uri("small", cpus=1, memory_mib=256), "small")
    pinned = cloud.launch(host_node_id=small["id"])  # the scheduler would take host1
    assert pinned["host_node_id"] == small["id"]
    by_name = cloud.launch(host_node_id="small", instance_type=None, cpu_cores=1, memory_size=64)
    assert by_name["host_node_id"] == small["id"]
    full = cloud.client.post(
        "/api/v1/instances",
        json={"image_id": cloud.image_id, "instance_type": "nano", "host_node_id": "small"},
        headers=bearer(cloud.admin),
    )
    assert full.status_code == 409 and "no host has room" in full.json()["detail"]
    user = cloud.keys.new("alice")
    refused = cloud.client.post(
        "/api/v1/instances",
        json={"image_id": cloud.image_id, "instance_type": "nano", "host_node_id": "small"},
        headers=bearer(user),
    )
    assert refused.status_code == 403 and "only an admin" in refused.json()["detail"]
    free = cloud.launch(user)  # without a pin, the scheduler spreads as before
    assert free["host_node_id"] == cloud.host_id


def test_instances_of_an_offline_host_say_so(cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    alice = cloud.keys.new("alice")
    instance = cloud.wait_for(cloud.launch(alice)["id"], "running", key=alice)
    assert instance["state_reason"] == ""

    def gone(self: HostDriver) -> None:
        raise HostUnreachable("Cannot recv data: Connection reset by peer")

    monkeypatch.setattr(HostDriver, "capacity", gone)  # libvirtd stops answering
    deadline = time.monotonic() + 60  # generous: the condition is waited for, not the clock
    while (
        cloud.client.get(f"{HOSTS}/{cloud.host_id}", headers=bearer(cloud.admin)).json()["status"]
        != "offline"
    ):
        assert time.monotonic() < deadline, "the sync never saw the host go"
        time.sleep(0.1)
    shown = cloud.show(instance["id"], alice)
    assert shown["state"] == "running"
    assert shown["state_reason"].startswith("host host1 is offline")
    assert "Connection reset" not in shown["state_reason"]  # the host's words are admins'


def test_a_guest_qemu_paused_by_itself_ends_in_error(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance = cloud.wait_for(cloud.launch()["id"], "running")
    listed = HostDriver.list_domains

    def faulted(self: HostDriver) -> list[DomainInfo]:
        return [
            DomainInfo(d.name, "paused", d.instance_id, d.account_id, stopped_by_fault=True)
            for d in listed(self)
        ]

    monkeypatch.setattr(HostDriver, "list_domains", faulted)  # a KVM internal error's pause
    failed = cloud.wait_for(instance["id"], "error")
    assert "qemu stopped the guest on host host1" in failed["state_reason"]
    assert "KVM internal error" in failed["state_reason"]


def test_a_local_image_is_its_own_copy(cloud: Cloud) -> None:
    """On the host vdc runs on (and the test driver), the image store is the image pool:
    nothing is uploaded, no copy is recorded."""
    cloud.wait_for(cloud.launch()["id"], "running")
    image = cloud.client.get(f"/api/v1/images/{cloud.image_id}", headers=bearer(cloud.admin))
    assert image.json()["copies"] == []
    user = cloud.keys.new("alice")
    seen = cloud.client.get(f"/api/v1/images/{cloud.image_id}", headers=bearer(user)).json()
    assert seen["copies"] == []

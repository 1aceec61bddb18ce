"""Volumes on libvirt's test driver, through the API, on SQLite and PostgreSQL: every state
transition and refusal, what the host holds at each step, and what the metadata shows.

The test driver cannot hot-plug, so on it an attach to a running guest changes the
persistent definition only; the live half is proven with real guests (tests/e2e).
"""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import libvirt
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from hypervisor.connection import POOL
from hypervisor.errors import HypervisorError
from metadata.app import create_metadata_app
from metadata.state import FULL_EVERY
from tests.conftest import Keys, bearer
from tests.integration.cloud import Cloud, build_cloud

MIB = 1024**2
# A change shows at the metadata service's next refresh (0.2 s on an idle machine); waiting
# up to 30 s still tells that apart from a cached tree that goes only at the full rebuild.
METADATA_DEADLINE = 30
assert METADATA_DEADLINE < FULL_EVERY


@pytest.fixture
def cloud(client: TestClient, keys: Keys, test_host_uri, make_disk: Callable[..., Path]) -> Cloud:  # type: ignore[no-untyped-def]
    return build_cloud(client, keys, test_host_uri(), make_disk)


# --- helpers that act as a user would ------------------------------------------------------


def create(cloud: Cloud, key: str | None = None, **body: Any) -> dict[str, Any]:
    response = cloud.client.post("/api/v1/volumes", json=body, headers=bearer(key or cloud.admin))
    assert response.status_code == 202, response.text
    return dict(response.json())


def show(cloud: Cloud, volume_id: str, key: str | None = None) -> dict[str, Any]:
    response = cloud.client.get(f"/api/v1/volumes/{volume_id}", headers=bearer(key or cloud.admin))
    assert response.status_code == 200, response.text
    return dict(response.json())


def attach(cloud: Cloud, volume_id: str, instance_id: str, key: str | None = None, **extra: Any):  # type: ignore[no-untyped-def]
    return cloud.client.post(
        f"/api/v1/volumes/{volume_id}/attach",
        json={"instance_id": instance_id, **extra},
        headers=bearer(key or cloud.admin),
    )


def detach(cloud: Cloud, volume_id: str, key: str | None = None):  # type: ignore[no-untyped-def]
    return cloud.client.post(
        f"/api/v1/volumes/{volume_id}/detach", headers=bearer(key or cloud.admin)
    )


def wait_volume(
    cloud: Cloud, volume_id: str, state: str, key: str | None = None, timeout: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        current = show(cloud, volume_id, key)
        if current["state"] == state:
            return current
        assert current["state"] != "error" or state == "error", current
        if time.monotonic() > deadline:
            raise AssertionError(f"{volume_id} stayed {current['state']}, wanted {state}")
        time.sleep(0.05)


def running_instance(cloud: Cloud, key: str | None = None, **body: Any) -> dict[str, Any]:
    launched = cloud.launch(key, **body)
    return cloud.wait_for(launched["id"], "running", key=key)


def pool_volumes(cloud: Cloud, pool: str = "vdc-volumes") -> dict[str, ET.Element]:
    connection = POOL.get(cloud.host_uri)
    if pool not in connection.listStoragePools() + connection.listDefinedStoragePools():
        return {}
    handle = connection.storagePoolLookupByName(pool)
    handle.refresh(0)
    return {
        name: ET.fromstring(handle.storageVolLookupByName(name).XMLDesc(0))
        for name in handle.listVolumes()
    }


def disks(cloud: Cloud, instance_id: str, live: bool = False) -> dict[str, str]:
    """serial -> target device, in the domain's persistent (or live) definition."""
    flags = 0 if live else libvirt.VIR_DOMAIN_XML_INACTIVE
    domain = POOL.get(cloud.host_uri).lookupByName(instance_id)
    root = ET.fromstring(domain.XMLDesc(flags))
    return {
        disk.findtext("serial") or "": disk.find("target").get("dev")  # type: ignore[union-attr]
        for disk in root.iter("disk")
    }


def eventually(read: Callable[[], Any], wanted: Any, within: float) -> bool:
    deadline = time.monotonic() + within
    while (value := read()) != wanted:
        assert time.monotonic() < deadline, f"still {value!r}, wanted {wanted!r}"
        time.sleep(0.05)
    return True


# --- create, show, rename, delete ----------------------------------------------------------


class TestLifecycle:
    def test_blank_volume_is_made_in_the_pool_then_deleted(self, cloud: Cloud) -> None:
        made = create(cloud, size_mib=64, display_name="data")
        assert made["state"] == "creating"
        assert made["id"].startswith("vol-")
        assert (made["size"], made["size_mib"]) == (64 * MIB, 64)
        assert made["host_node_id"] == cloud.host_id  # the only host

        available = wait_volume(cloud, made["id"], "available")
        assert available["instance_id"] is None and available["device"] is None
        on_host = pool_volumes(cloud)[f"{made['id']}.qcow2"]
        assert int(on_host.findtext("capacity")) == 64 * MIB  # type: ignore[arg-type]
        assert on_host.find("target/format").get("type") == "qcow2"  # type: ignore[union-attr]
        assert on_host.find("backingStore/path") is None

        renamed = cloud.client.patch(
            f"/api/v1/volumes/{made['id']}",
            json={"display_name": "logs"},
            headers=bearer(cloud.admin),
        )
        assert renamed.json()["display_name"] == "logs"
        listed = cloud.client.get(
            "/api/v1/volumes", params={"state": "available"}, headers=bearer(cloud.admin)
        ).json()
        assert [v["id"] for v in listed["items"]] == [made["id"]]

        deleting = cloud.client.delete(f"/api/v1/volumes/{made['id']}", headers=bearer(cloud.admin))
        assert deleting.status_code == 202 and deleting.json()["state"] == "deleting"
        deleted = wait_volume(cloud, made["id"], "deleted")
        assert deleted["deleted_at"] is not None
        assert f"{made['id']}.qcow2" not in pool_volumes(cloud)
        again = cloud.client.delete(f"/api/v1/volumes/{made['id']}", headers=bearer(cloud.admin))
        assert again.status_code == 202 and again.json()["state"] == "deleted"

    def test_a_volume_from_an_image_is_an_overlay_on_it(self, cloud: Cloud, settings: Any) -> None:
        made = create(cloud, image_id=cloud.image_id)
        assert made["size_mib"] == 64  # the image's virtual size
        wait_volume(cloud, made["id"], "available")
        on_host = pool_volumes(cloud)[f"{made['id']}.qcow2"]
        assert on_host.findtext("backingStore/path") == str(
            settings.image_dir / f"{cloud.image_id}.qcow2"
        )
        bigger = create(cloud, image_id=cloud.image_id, size_gib=1)
        assert bigger["size"] == 1024**3
        # The image cannot go while a volume stands on it.
        refused = cloud.client.delete(
            f"/api/v1/images/{cloud.image_id}", headers=bearer(cloud.admin)
        )
        assert refused.status_code == 409, refused.text
        assert made["id"] in refused.json()["detail"] or bigger["id"] in refused.json()["detail"]

    @pytest.mark.parametrize(
        ("body", "status", "words"),
        [
            ({"size_mib": 0}, 422, "greater than or equal to 1"),
            ({"size_mib": -5}, 422, "greater than or equal to 1"),
            ({}, 422, "size_mib or size_gib"),
            ({"size_mib": 64, "size_gib": 1}, 422, "not both"),
            ({"size_gib": 4096}, 400, "limited to 2048 GiB"),
            ({"size_mib": 32, "image_id": "IMAGE"}, 400, "smaller than image"),
            ({"size_mib": 32, "image_id": "wmi-nothere"}, 404, "image wmi-nothere not found"),
            ({"size_mib": 32, "instance_id": "i-nothere"}, 404, "instance i-nothere not found"),
            ({"size_mib": 32, "host_node_id": "hn-nothere"}, 404, "host hn-nothere not found"),
        ],
    )
    def test_bad_creates_are_refused_with_a_reason(
        self, cloud: Cloud, body: dict[str, Any], status: int, words: str
    ) -> None:
        if body.get("image_id") == "IMAGE":
            body = {**body, "image_id": cloud.image_id}  # the parameter is shared: no mutation
        response = cloud.client.post("/api/v1/volumes", json=body, headers=bearer(cloud.admin))
        assert response.status_code == status, response.text
        assert words in response.text
        listed = cloud.client.get("/api/v1/volumes", headers=bearer(cloud.admin)).json()
        assert listed["total"] == 0

    def test_a_failed_create_ends_in_error_with_the_reason(
        self, cloud: Cloud, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from hypervisor.driver import HostDriver

        def refuse(self: HostDriver, pool: str, spec: Any) -> str:
            raise HypervisorError("no space left on device")

        monkeypatch.setattr(HostDriver, "ensure_volume", refuse)
        made = create(cloud, size_mib=8)
        failed = wait_volume(cloud, made["id"], "error")
        assert "no space left on device" in failed["state_reason"]
        # A volume in error can still be deleted.
        monkeypatch.undo()
        cloud.client.delete(f"/api/v1/volumes/{made['id']}", headers=bearer(cloud.admin))
        wait_volume(cloud, made["id"], "deleted")


# --- attach and detach ---------------------------------------------------------------------


class TestAttach:
    def test_attach_detach_on_a_running_instance(self, cloud: Cloud, guest) -> None:  # type: ignore[no-untyped-def]
        instance = running_instance(cloud)
        volume = create(cloud, size_mib=64, instance_id=instance["id"])
        wait_volume(cloud, volume["id"], "available")

        asked = attach(cloud, volume["id"], instance["id"])
        assert asked.status_code == 202, asked.text
        assert (asked.json()["state"], asked.json()["device"]) == ("attaching", "vdb")
        attached = wait_volume(cloud, volume["id"], "attached")
        assert attached["instance_id"] == instance["id"] and attached["attached_at"]
        assert disks(cloud, instance["id"])[volume["id"]] == "vdb"

        # The instance lists its disks: the root disk first, as a boot volume.
        listed = cloud.client.get(
            f"/api/v1/instances/{instance['id']}/volumes", headers=bearer(cloud.admin)
        ).json()
        assert [(v["device"], v["boot"], v["state"]) for v in listed] == [
            ("vda", True, "attached"),
            ("vdb", False, "attached"),
        ]
        assert listed[1]["id"] == volume["id"]
        # The metadata service shows it at its next refresh, not at the full rebuild: the tree
        # is keyed by the instance's updated_at, so no cached tree hides it.
        me = guest(instance["ip_address"])
        mapping = "/latest/meta-data/block-device-mapping/"
        assert eventually(lambda: me.get(mapping).text, "ami\nebs1\nroot", within=METADATA_DEADLINE)
        assert me.get("/latest/meta-data/block-device-mapping/ebs1").text == "vdb"

        gone = detach(cloud, volume["id"])
        assert gone.status_code == 202 and gone.json()["state"] == "detaching"
        available = wait_volume(cloud, volume["id"], "available")
        assert (available["instance_id"], available["device"]) == (None, None)
        assert volume["id"] not in disks(cloud, instance["id"])
        assert eventually(lambda: me.get(mapping).text, "ami\nroot", within=METADATA_DEADLINE)

    def test_attached_volumes_stay_across_stop_start_and_reboot(self, cloud: Cloud) -> None:
        instance = running_instance(cloud)
        volume = create(cloud, size_mib=16)
        wait_volume(cloud, volume["id"], "available")
        assert attach(cloud, volume["id"], instance["id"]).status_code == 202
        wait_volume(cloud, volume["id"], "attached")
        assert cloud.action(instance["id"], "stop").status_code == 202
        cloud.wait_for(instance["id"], "stopped")
        assert cloud.action(instance["id"], "start").status_code == 202
        cloud.wait_for(instance["id"], "running")
        assert cloud.action(instance["id"], "reboot").status_code == 202
        cloud.wait_for(instance["id"], "running")
        assert disks(cloud, instance["id"], live=True)[volume["id"]] == "vdb"
        assert show(cloud, volume["id"])["state"] == "attached"

    def test_attach_to_a_stopped_instance_takes_effect_at_its_next_boot(self, cloud: Cloud) -> None:
        instance = running_instance(cloud)
        cloud.action(instance["id"], "stop")
        cloud.wait_for(instance["id"], "stopped")
        volume = create(cloud, size_mib=16)
        wait_volume(cloud, volume["id"], "available")
        assert attach(cloud, volume["id"], instance["id"], device="vdf").status_code == 202
        assert wait_volume(cloud, volume["id"], "attached")["device"] == "vdf"
        assert disks(cloud, instance["id"])[volume["id"]] == "vdf"
        cloud.action(instance["id"], "start")
        cloud.wait_for(instance["id"], "running")
        assert disks(cloud, instance["id"], live=True)[volume["id"]] == "vdf"
        # Detach from a stopped instance too.
        cloud.action(instance["id"], "stop")
        cloud.wait_for(instance["id"], "stopped")
        detach(cloud, volume["id"])
        wait_volume(cloud, volume["id"], "available")
        assert volume["id"] not in disks(cloud, instance["id"])

    def test_concurrent_attaches_to_one_instance_get_distinct_devices(self, cloud: Cloud) -> None:
        instance = running_instance(cloud)
        made = [create(cloud, size_mib=8) for _ in range(6)]
        for volume in made:
            wait_volume(cloud, volume["id"], "available")
        answers: list[Any] = []
        start = threading.Barrier(len(made))

        def ask(volume_id: str) -> None:
            start.wait()
            answers.append(attach(cloud, volume_id, instance["id"]))

        threads = [threading.Thread(target=ask, args=(v["id"],)) for v in made]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(a.status_code for a in answers) == [202] * 6, [a.text for a in answers]
        devices = [wait_volume(cloud, v["id"], "attached")["device"] for v in made]
        assert sorted(devices) == ["vdb", "vdc", "vdd", "vde", "vdf", "vdg"]
        assert sorted(disks(cloud, instance["id"]).values()) == [
            "vda",
            "vdb",
            "vdc",
            "vdd",
            "vde",
            "vdf",
            "vdg",
        ]

    def test_one_volume_asked_for_by_two_instances_goes_to_one(self, cloud: Cloud) -> None:
        first, second = running_instance(cloud), running_instance(cloud)
        volume = create(cloud, size_mib=8)
        wait_volume(cloud, volume["id"], "available")
        answers: list[Any] = []
        start = threading.Barrier(2)

        def ask(instance_id: str) -> None:
            start.wait()
            answers.append(attach(cloud, volume["id"], instance_id))

        threads = [threading.Thread(target=ask, args=(i["id"],)) for i in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(a.status_code for a in answers) == [202, 409], [a.text for a in answers]
        winner = next(a.json()["instance_id"] for a in answers if a.status_code == 202)
        assert wait_volume(cloud, volume["id"], "attached")["instance_id"] == winner

    def test_detach_that_the_guest_does_not_answer_ends_in_error_then_retries(
        self, cloud: Cloud, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from hypervisor.guest import Guest

        instance = running_instance(cloud)
        volume = create(cloud, size_mib=8)
        wait_volume(cloud, volume["id"], "available")
        attach(cloud, volume["id"], instance["id"])
        wait_volume(cloud, volume["id"], "attached")

        # A guest without acpiphp ignores the eject request: the wait runs out.
        monkeypatch.setattr(Guest, "hot_unplug_disk", lambda self, serial, timeout: False)
        detach(cloud, volume["id"])
        stuck = wait_volume(cloud, volume["id"], "error")
        assert "did not release vdb" in stuck["state_reason"]
        assert stuck["instance_id"] == instance["id"]  # still attached, and said so
        assert volume["id"] in disks(cloud, instance["id"])
        refused = cloud.client.delete(
            f"/api/v1/volumes/{volume['id']}", headers=bearer(cloud.admin)
        )
        assert refused.status_code == 409

        monkeypatch.undo()  # the guest lets go this time
        assert detach(cloud, volume["id"]).status_code == 202
        wait_volume(cloud, volume["id"], "available")
        assert volume["id"] not in disks(cloud, instance["id"])


class TestRefusals:
    def test_what_cannot_be_attached_detached_or_deleted(self, cloud: Cloud) -> None:
        instance = running_instance(cloud)
        volume = create(cloud, size_mib=8)
        wait_volume(cloud, volume["id"], "available")
        # detaching or deleting what is not attached / attached
        assert detach(cloud, volume["id"]).status_code == 409
        assert attach(cloud, volume["id"], instance["id"]).status_code == 202
        wait_volume(cloud, volume["id"], "attached")
        again = attach(cloud, volume["id"], instance["id"])
        assert again.status_code == 409 and "attached" in again.json()["detail"]
        deleting = cloud.client.delete(
            f"/api/v1/volumes/{volume['id']}", headers=bearer(cloud.admin)
        )
        assert deleting.status_code == 409 and "detach it first" in deleting.json()["detail"]

        # the root disk
        root = cloud.client.get(
            f"/api/v1/instances/{instance['id']}/volumes", headers=bearer(cloud.admin)
        ).json()[0]
        assert root["boot"] and root["device"] == "vda"
        refused = detach(cloud, root["id"])
        assert refused.status_code == 409 and "root disk" in refused.json()["detail"]
        refused = cloud.client.delete(f"/api/v1/volumes/{root['id']}", headers=bearer(cloud.admin))
        assert refused.status_code == 409 and "terminate the instance" in refused.json()["detail"]

        # device names: malformed, taken
        other = create(cloud, size_mib=8)
        wait_volume(cloud, other["id"], "available")
        assert attach(cloud, other["id"], instance["id"], device="sda").status_code == 422
        assert attach(cloud, other["id"], instance["id"], device="vda").status_code == 422
        taken = attach(cloud, other["id"], instance["id"], device="vdb")
        assert taken.status_code == 409 and "vdb" in taken.json()["detail"]
        # a volume still being made: no worker makes it meanwhile (a woken one is quick)
        cloud.client.app.state.worker.stop()  # type: ignore[attr-defined]
        creating = attach(cloud, create(cloud, size_mib=8)["id"], instance["id"])
        assert creating.status_code == 409 and "creating" in creating.json()["detail"]
        assert show(cloud, volume["id"])["state"] == "attached"

    @pytest.mark.parametrize(
        "state", ["pending", "starting", "stopping", "rebooting", "shuttingdown", "error"]
    )
    def test_an_instance_in_transition_takes_no_volume(
        self, cloud: Cloud, engine: sa.Engine, state: str
    ) -> None:
        instance = running_instance(cloud)
        volume = create(cloud, size_mib=8)
        wait_volume(cloud, volume["id"], "available")
        with engine.begin() as connection:  # as if a job were under way (none is queued)
            connection.execute(
                sa.text("UPDATE instances SET state = :s WHERE id = :i"),
                {"s": state, "i": instance["id"]},
            )
        refused = attach(cloud, volume["id"], instance["id"])
        assert refused.status_code == 409, refused.text
        assert f"is {state}; volumes attach to a running or stopped instance" in refused.text
        assert show(cloud, volume["id"])["state"] == "available"

    def test_a_terminated_or_unknown_instance_takes_no_volume(self, cloud: Cloud) -> None:
        volume = create(cloud, size_mib=8)
        wait_volume(cloud, volume["id"], "available")
        instance = running_instance(cloud)
        cloud.client.delete(f"/api/v1/instances/{instance['id']}", headers=bearer(cloud.admin))
        cloud.wait_for(instance["id"], "terminated")
        refused = attach(cloud, volume["id"], instance["id"])
        assert refused.status_code == 409 and "terminated" in refused.json()["detail"]
        assert attach(cloud, volume["id"], "i-nothere").status_code == 404
        assert show(cloud, volume["id"])["state"] == "available"

    def test_no_attach_across_hosts(self, cloud: Cloud, test_host_uri) -> None:  # type: ignore[no-untyped-def]
        other_host = cloud.client.post(
            "/api/v1/host_nodes",
            json={"name": "host2", "uri": test_host_uri("host2")},
            headers=bearer(cloud.admin),
        ).json()
        instance = running_instance(cloud)
        volume = create(
            cloud,
            size_mib=8,
            host_node_id=(
                other_host["id"] if instance["host_node_id"] == cloud.host_id else cloud.host_id
            ),
        )
        wait_volume(cloud, volume["id"], "available")
        refused = attach(cloud, volume["id"], instance["id"])
        assert refused.status_code == 409, refused.text
        assert f"create the volume with instance_id={instance['id']}" in refused.json()["detail"]

    def test_another_accounts_volume_or_instance_is_not_found(self, cloud: Cloud) -> None:
        alice, bob = cloud.keys.new("alice"), cloud.keys.new("bob")
        alices_instance = running_instance(cloud, alice)
        alices_volume = create(cloud, alice, size_mib=8)
        wait_volume(cloud, alices_volume["id"], "available", alice)
        bobs_volume = create(cloud, bob, size_mib=8)
        wait_volume(cloud, bobs_volume["id"], "available", bob)
        vid = alices_volume["id"]
        headers = bearer(bob)
        for response in (
            cloud.client.get(f"/api/v1/volumes/{vid}", headers=headers),
            cloud.client.patch(
                f"/api/v1/volumes/{vid}", json={"display_name": "x"}, headers=headers
            ),
            cloud.client.delete(f"/api/v1/volumes/{vid}", headers=headers),
            attach(cloud, vid, alices_instance["id"], bob),
            detach(cloud, vid, bob),
            # Bob's volume onto Alice's instance: her instance does not exist for him.
            attach(cloud, bobs_volume["id"], alices_instance["id"], bob),
            cloud.client.get(f"/api/v1/instances/{alices_instance['id']}/volumes", headers=headers),
        ):
            assert response.status_code == 404, response.text
        assert cloud.client.get("/api/v1/volumes", headers=headers).json()["total"] == 1
        # Even an admin cannot put one account's volume on another account's instance.
        across = attach(cloud, bobs_volume["id"], alices_instance["id"])
        assert across.status_code == 409 and "within its account" in across.json()["detail"]
        assert show(cloud, vid, alice)["display_name"] == ""
        assert show(cloud, vid, alice)["state"] == "available"


# --- with launch and terminate -------------------------------------------------------------


class TestWithInstances:
    def test_launch_with_volumes_and_terminate_keeps_what_asked_to_be_kept(
        self, cloud: Cloud
    ) -> None:
        instance = running_instance(
            cloud,
            volumes=[
                {"size_mib": 32, "display_name": "scratch"},
                {"size_gib": 1, "delete_on_termination": False},
            ],
        )
        listed = cloud.client.get(
            f"/api/v1/instances/{instance['id']}/volumes", headers=bearer(cloud.admin)
        ).json()
        assert [(v["device"], v["state"], v["size_mib"]) for v in listed] == [
            ("vda", "attached", 64),
            ("vdb", "attached", 32),
            ("vdc", "attached", 1024),
        ]
        root, scratch, kept = listed
        assert disks(cloud, instance["id"], live=True) == {
            "": "vda",  # the root disk carries no serial
            scratch["id"]: "vdb",
            kept["id"]: "vdc",
        }
        plain = create(cloud, size_mib=8, instance_id=instance["id"])
        wait_volume(cloud, plain["id"], "available")
        attach(cloud, plain["id"], instance["id"])
        wait_volume(cloud, plain["id"], "attached")

        cloud.client.delete(f"/api/v1/instances/{instance['id']}", headers=bearer(cloud.admin))
        cloud.wait_for(instance["id"], "terminated")
        assert show(cloud, root["id"])["state"] == "deleted"
        assert show(cloud, scratch["id"])["state"] == "deleted"
        for survivor in (kept, plain):
            after = show(cloud, survivor["id"])
            assert (after["state"], after["instance_id"], after["device"]) == (
                "available",
                None,
                None,
            )
        on_host = pool_volumes(cloud)
        assert set(on_host) == {f"{kept['id']}.qcow2", f"{plain['id']}.qcow2"}
        assert f"{instance['id']}-root.qcow2" not in pool_volumes(cloud, "vdc-instances")

    def test_launch_volume_sizes_are_checked(self, cloud: Cloud) -> None:
        for volumes, status in (
            ([{"size_mib": 0}], 422),
            ([{}], 422),
            ([{"size_gib": 4096}], 400),
            ([{"size_mib": 8}] * 9, 422),
        ):
            response = cloud.client.post(
                "/api/v1/instances",
                json={"image_id": cloud.image_id, "instance_type": "nano", "volumes": volumes},
                headers=bearer(cloud.admin),
            )
            assert response.status_code == status, response.text
        listed = cloud.client.get("/api/v1/instances", headers=bearer(cloud.admin)).json()
        assert listed["total"] == 0

    def test_a_failed_launch_leaves_its_volumes_in_error(
        self, cloud: Cloud, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from hypervisor.driver import HostDriver

        def refuse(self: HostDriver, spec: Any) -> Any:
            raise HypervisorError("cannot define domain")

        monkeypatch.setattr(HostDriver, "ensure_domain", refuse)
        launched = cloud.launch(volumes=[{"size_mib": 8}])
        cloud.wait_for(launched["id"], "error")
        listed = cloud.client.get(
            f"/api/v1/instances/{launched['id']}/volumes", headers=bearer(cloud.admin)
        ).json()
        assert {v["state"] for v in listed} == {"error"}
        assert all("cannot define domain" in v["state_reason"] for v in listed)
        monkeypatch.undo()
        cloud.client.delete(f"/api/v1/instances/{launched['id']}", headers=bearer(cloud.admin))
        cloud.wait_for(launched["id"], "terminated")
        states = [show(cloud, v["id"])["state"] for v in listed]
        assert states == ["deleted", "deleted"]  # root and a delete_on_termination volume


@pytest.fixture
def guest(engine: sa.Engine):  # type: ignore[no-untyped-def]
    """guest(ip) -> an HTTP client that looks like the guest with that address."""
    app = create_metadata_app(engine, "vdc-1", token_secret="t" * 32)

    def make(ip: str) -> TestClient:
        return TestClient(app, base_url="http://10.10.0.1:8775", client=(ip, 40000))

    return make

"""Installer ISOs on libvirt's test driver, through the API, on SQLite and PostgreSQL: an ISO
is recognised and kept as kind `iso`; launching one gives a blank root disk of the size
asked for and the ISO as a read-only CD-ROM that boots first; eject empties the drive.

The test driver changes only persistent definitions (no live media change): a real
guest's drive, and a guest that boots its disk after the eject, are in tests/e2e.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import libvirt
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from app.config import Settings
from app.models import Job
from hypervisor.connection import POOL
from tests.conftest import Keys, bearer
from tests.integration.cloud import OCTET, Cloud, build_cloud

GIB = 1024**3


@pytest.fixture
def cloud(client: TestClient, keys: Keys, test_host_uri, make_disk: Callable[..., Path]) -> Cloud:  # type: ignore[no-untyped-def]
    return build_cloud(client, keys, test_host_uri(), make_disk)


def upload_iso(cloud: Cloud, path: Path, key: str | None = None, **params: str) -> Any:
    return cloud.client.post(
        "/api/v1/images",
        params={"arch": "x86_64", **params},
        content=path.read_bytes(),
        headers={**bearer(key or cloud.admin), **OCTET},
    )


@pytest.fixture
def iso(cloud: Cloud, make_iso: Callable[[str], Path]) -> dict[str, Any]:
    response = upload_iso(cloud, make_iso("debian.iso"))
    assert response.status_code == 201, response.text
    return dict(response.json())


def persistent_xml(cloud: Cloud, instance_id: str) -> ET.Element:
    domain = POOL.get(cloud.host_uri).lookupByName(instance_id)
    return ET.fromstring(domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))


def cdroms(cloud: Cloud, instance_id: str) -> list[ET.Element]:
    return persistent_xml(cloud, instance_id).findall("./devices/disk[@device='cdrom']")


def test_an_iso_is_kept_as_kind_iso_and_a_disk_as_disk(
    cloud: Cloud, iso: dict[str, Any], settings: Settings
) -> None:
    assert (iso["kind"], iso["format"], iso["state"]) == ("iso", "raw", "available")
    assert (settings.image_dir / f"{iso['id']}.iso").is_file()
    disk = cloud.client.get(f"/api/v1/images/{cloud.image_id}", headers=bearer(cloud.admin))
    assert disk.json()["kind"] == "disk"
    listed = cloud.client.get("/api/v1/images?limit=100", headers=bearer(cloud.admin)).json()
    assert {i["id"]: i["kind"] for i in listed["items"]} == {
        cloud.image_id: "disk",
        iso["id"]: "iso",
    }
    only_isos = cloud.client.get("/api/v1/images?kind=iso", headers=bearer(cloud.admin)).json()
    assert [i["id"] for i in only_isos["items"]] == [iso["id"]]
    available = cloud.client.get("/api/v1/images?state=available", headers=bearer(cloud.admin))
    assert available.json()["total"] == 2
    bad = cloud.client.get("/api/v1/images?kind=floppy", headers=bearer(cloud.admin))
    assert bad.status_code == 422


def test_an_iso_is_stored_as_it_is(cloud: Cloud, make_iso: Callable[[str], Path]) -> None:
    refused = upload_iso(cloud, make_iso("convert-me.iso"), convert="qcow2")
    assert refused.status_code == 400
    assert "ISO" in refused.json()["detail"] and "without conversion" in refused.json()["detail"]


def test_an_iso_needs_root_disk_size_to_launch(cloud: Cloud, iso: dict[str, Any]) -> None:
    body = {"image_id": iso["id"], "instance_type": "nano"}
    refused = cloud.client.post("/api/v1/instances", json=body, headers=bearer(cloud.admin))
    assert refused.status_code == 400
    assert "give root_disk_size" in refused.json()["detail"]
    too_big = cloud.client.post(
        "/api/v1/instances", json={**body, "root_disk_size": 4096}, headers=bearer(cloud.admin)
    )
    assert too_big.status_code == 400
    assert "over the limit of 2048 GiB" in too_big.json()["detail"]
    not_a_size = cloud.client.post(
        "/api/v1/instances", json={**body, "root_disk_size": 0}, headers=bearer(cloud.admin)
    )
    assert not_a_size.status_code == 422
    listed = cloud.client.get("/api/v1/instances", headers=bearer(cloud.admin)).json()
    assert listed["total"] == 0


def test_the_blank_disk_counts_against_the_volume_quota(
    cloud: Cloud, make_iso: Callable[[str], Path]
) -> None:
    alice = cloud.keys.new("alice")
    own = upload_iso(cloud, make_iso("alice.iso"), key=alice)
    assert own.status_code == 201, own.text
    cloud.client.patch(
        f"/api/v1/accounts/{cloud.keys.ids['alice']}/quota",
        json={"volume_gib": 10},
        headers=bearer(cloud.admin),
    ).raise_for_status()
    body = {"image_id": own.json()["id"], "instance_type": "nano", "root_disk_size": 11}
    refused = cloud.client.post("/api/v1/instances", json=body, headers=bearer(alice))
    assert refused.status_code == 409
    assert "quota exceeded" in refused.json()["detail"]


def test_launching_an_iso_gives_a_blank_disk_and_the_cd_boots_first(
    cloud: Cloud, iso: dict[str, Any], settings: Settings
) -> None:
    launched = cloud.launch(image_id=iso["id"], root_disk_size=1)
    assert (launched["cdrom_image_id"], launched["root_disk_size"]) == (iso["id"], 1)
    cloud.wait_for(launched["id"], "running")

    root = persistent_xml(cloud, launched["id"])
    assert [b.get("dev") for b in root.findall("./os/boot")] == ["cdrom", "hd"]
    (cdrom,) = cdroms(cloud, launched["id"])
    assert cdrom.find("source").get("file") == str(settings.image_dir / f"{iso['id']}.iso")
    assert cdrom.find("target").get("bus") == "sata"
    assert cdrom.find("readonly") is not None
    assert cdrom.find("driver").get("type") == "raw"

    pool = POOL.get(cloud.host_uri).storagePoolLookupByName("vdc-instances")
    disk = ET.fromstring(pool.storageVolLookupByName(f"{launched['id']}-root.qcow2").XMLDesc(0))
    assert disk.find("backingStore") is None  # blank: the ISO is no base
    assert int(disk.find("capacity").text) == GIB
    (vda,) = cloud.client.get(
        f"/api/v1/instances/{launched['id']}/volumes", headers=bearer(cloud.admin)
    ).json()
    assert (vda["boot"], vda["size"], vda["image_id"]) == (True, GIB, None)


def test_an_iso_cannot_be_a_volume(cloud: Cloud, iso: dict[str, Any]) -> None:
    response = cloud.client.post(
        "/api/v1/volumes", json={"image_id": iso["id"]}, headers=bearer(cloud.admin)
    )
    assert response.status_code == 400
    assert "only ever a CD-ROM" in response.json()["detail"]


class TestEject:
    def test_eject_empties_the_drive_and_the_next_start_keeps_it_empty(
        self, cloud: Cloud, iso: dict[str, Any]
    ) -> None:
        instance_id = cloud.launch(image_id=iso["id"], root_disk_size=1)["id"]
        cloud.wait_for(instance_id, "running")
        ejected = cloud.action(instance_id, "eject")
        assert ejected.status_code == 202, ejected.text
        assert ejected.json()["cdrom_image_id"] is None
        wait_for_jobs(cloud, instance_id)
        (cdrom,) = cdroms(cloud, instance_id)  # the drive stays, empty
        assert cdrom.find("source") is None

        again = cloud.action(instance_id, "eject")
        assert again.status_code == 409
        assert "ejected already" in again.json()["detail"]

        assert cloud.action(instance_id, "stop").status_code == 202
        cloud.wait_for(instance_id, "stopped")
        assert cloud.action(instance_id, "start").status_code == 202
        cloud.wait_for(instance_id, "running")
        (cdrom,) = cdroms(cloud, instance_id)
        assert cdrom.find("source") is None

    def test_stop_with_eject(self, cloud: Cloud, iso: dict[str, Any]) -> None:
        instance_id = cloud.launch(image_id=iso["id"], root_disk_size=1)["id"]
        cloud.wait_for(instance_id, "running")
        stopping = cloud.client.post(
            f"/api/v1/instances/{instance_id}/stop",
            json={"eject": True},
            headers=bearer(cloud.admin),
        )
        assert stopping.status_code == 202, stopping.text
        assert stopping.json()["cdrom_image_id"] is None
        cloud.wait_for(instance_id, "stopped")
        wait_for_jobs(cloud, instance_id)
        (cdrom,) = cdroms(cloud, instance_id)
        assert cdrom.find("source") is None
        bad = cloud.client.post(
            f"/api/v1/instances/{instance_id}/start",
            json={"eject": "maybe"},
            headers=bearer(cloud.admin),
        )
        assert bad.status_code == 202  # start takes no body; what is sent is ignored
        cloud.wait_for(instance_id, "running")

    def test_an_instance_of_a_disk_image_has_nothing_to_eject(self, cloud: Cloud) -> None:
        instance_id = cloud.launch()["id"]
        cloud.wait_for(instance_id, "running")
        refused = cloud.action(instance_id, "eject")
        assert refused.status_code == 409
        assert "not launched from an ISO" in refused.json()["detail"]
        assert cdroms(cloud, instance_id) == []
        # stop's eject is then simply nothing to do
        stopping = cloud.client.post(
            f"/api/v1/instances/{instance_id}/stop",
            json={"eject": True},
            headers=bearer(cloud.admin),
        )
        assert stopping.status_code == 202
        cloud.wait_for(instance_id, "stopped")

    def test_another_accounts_instance_is_not_found(
        self, cloud: Cloud, iso: dict[str, Any]
    ) -> None:
        instance_id = cloud.launch(image_id=iso["id"], root_disk_size=1)["id"]
        bob = cloud.keys.new("bob")
        response = cloud.action(instance_id, "eject", key=bob)
        assert response.status_code == 404
        assert cloud.show(instance_id)["cdrom_image_id"] == iso["id"]
        assert cloud.client.post(f"/api/v1/instances/{instance_id}/eject").status_code == 401


def wait_for_jobs(cloud: Cloud, instance_id: str, timeout: float = 20) -> None:
    """Until the instance has no job queued or running (its eject has run)."""
    engine = cloud.client.app.state.worker.ctx.engine  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout
    while True:
        with Session(engine) as session:
            busy = session.exec(
                select(Job.id)
                .where(Job.instance_id == instance_id)
                .where(col(Job.state).in_(["queued", "running"]))
            ).first()
        if busy is None:
            return
        assert time.monotonic() < deadline, f"jobs of {instance_id} still pending"
        time.sleep(0.05)


def test_an_iso_is_deleted_once_its_instances_are_terminated(
    cloud: Cloud, iso: dict[str, Any], settings: Settings
) -> None:
    """A terminated instance still names the image it ran: that must not stop its deletion
    (it was a 500), while a live instance's still does (409)."""
    instance_id = cloud.launch(image_id=iso["id"], root_disk_size=1)["id"]
    cloud.wait_for(instance_id, "running")
    in_use = cloud.client.delete(f"/api/v1/images/{iso['id']}", headers=bearer(cloud.admin))
    assert in_use.status_code == 409 and "in use by" in in_use.json()["detail"]
    cloud.client.delete(f"/api/v1/instances/{instance_id}", headers=bearer(cloud.admin))
    cloud.wait_for(instance_id, "terminated")
    deleted = cloud.client.delete(f"/api/v1/images/{iso['id']}", headers=bearer(cloud.admin))
    assert deleted.status_code == 204, deleted.text
    assert not (settings.image_dir / f"{iso['id']}.iso").exists()
    assert cloud.show(instance_id)["image_id"] == iso["id"]  # its history stays

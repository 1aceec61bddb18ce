"""Wakame-vdc's metadata drive on a test:// host, on both databases: who gets one (the
launch's choice, else the image's), the disk the domain has, the drive's files against
what the metadata service answers, a rebuild at start only when the facts changed, and
nothing left after terminate."""

from __future__ import annotations

import base64
import os
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session

from app.config import Settings
from app.services import doctor
from app.services.compute import metadata_drive
from app.services.jobs_context import JobContext
from hypervisor.connection import POOL
from hypervisor.driver import HostDriver
from metadata.app import create_metadata_app
from tests.conftest import Keys, bearer
from tests.integration.cloud import Cloud, build_cloud
from tests.integration.test_volumes import create, wait_volume
from tests.integration.web_forms import sign_in

GATEWAY = "http://10.10.0.1:8775"
PARTITION = 1024 * 1024  # where the FAT filesystem starts in the image


@pytest.fixture
def cloud(client: TestClient, keys: Keys, test_host_uri, make_disk: Callable[..., Path]) -> Cloud:  # type: ignore[no-untyped-def]
    return build_cloud(client, keys, test_host_uri(), make_disk)


@pytest.fixture
def guest(engine: sa.Engine):  # type: ignore[no-untyped-def]
    """guest(ip) -> an HTTP client of the metadata service that looks like that guest."""
    app = create_metadata_app(engine, "vdc-1", token_secret="t" * 32)
    return lambda ip: TestClient(app, base_url=GATEWAY, client=(ip, 40000))


def drive_image(settings: Settings, instance_id: str) -> Path:
    return settings.data_dir / "metadata-drives" / f"{instance_id}.img"


def drive_files(image: Path, into: Path) -> dict[str, bytes]:
    """Every file of the drive, read back with mtools (nothing mounted)."""
    into.mkdir()
    subprocess.run(
        ["mcopy", "-s", "-n", "-i", f"{image}@@{PARTITION}", "::/*", str(into)],
        check=True,
        capture_output=True,
        env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
    )
    files = {str(p.relative_to(into)): p.read_bytes() for p in into.rglob("*") if p.is_file()}
    shutil.rmtree(into)
    return files


def service_leaves(me: TestClient, path: str = "meta-data/") -> dict[str, bytes]:
    """Every leaf the metadata service answers below `path`, by walking its listings."""
    found: dict[str, bytes] = {}
    for name in me.get(f"/latest/{path}").text.splitlines():
        child = path + (f"{name.split('=')[0]}/" if "=" in name else name)
        if child.endswith("/"):
            found |= service_leaves(me, child)
        else:
            answer = me.get(f"/latest/{child}")
            assert answer.status_code == 200, child
            found[child] = answer.content
    return found


def domain_disks(cloud: Cloud, instance_id: str) -> dict[str, ET.Element]:
    domain = POOL.get(cloud.host_uri).lookupByName(instance_id)
    root = ET.fromstring(domain.XMLDesc(0))
    return {disk.find("target").get("dev"): disk for disk in root.iter("disk")}  # type: ignore[union-attr]


def instance_pool(cloud: Cloud) -> list[str]:
    return list(POOL.get(cloud.host_uri).storagePoolLookupByName("vdc-instances").listVolumes())


def patch(cloud: Cloud, path: str, body: dict[str, object]) -> dict[str, object]:
    response = cloud.client.patch(path, json=body, headers=bearer(cloud.admin))
    assert response.status_code == 200, response.text
    return dict(response.json())


class TestWhoGetsOne:
    def test_launch_option_attaches_a_read_only_drive_after_the_root_disk(
        self, cloud: Cloud, settings: Settings
    ) -> None:
        launched = cloud.launch(metadata_drive=True, volumes=[{"size_mib": 8}])
        assert launched["metadata_drive"] is True
        running = cloud.wait_for(launched["id"], "running")
        assert running["metadata_drive"] is True
        disks = domain_disks(cloud, running["id"])
        assert sorted(disks) == ["vda", "vdb", "vdc"]  # root, drive, the launch's volume
        drive = disks["vdb"]
        assert drive.find("readonly") is not None
        assert drive.find("serial").text == "metadata"  # type: ignore[union-attr]
        assert drive.find("driver").get("type") == "raw"  # type: ignore[union-attr]
        assert drive.find("source").get("file").endswith(f"/{running['id']}-metadata.img")  # type: ignore[union-attr]
        assert f"{running['id']}-metadata.img" in instance_pool(cloud)
        assert drive_image(settings, running["id"]).is_file()
        volumes = cloud.client.get(
            f"/api/v1/instances/{running['id']}/volumes", headers=bearer(cloud.admin)
        ).json()
        assert [v["device"] for v in volumes] == ["vda", "vdc"]

    def test_no_drive_by_default(self, cloud: Cloud, settings: Settings) -> None:
        running = cloud.wait_for(cloud.launch()["id"], "running")
        assert running["metadata_drive"] is False
        assert sorted(domain_disks(cloud, running["id"])) == ["vda"]
        assert not drive_image(settings, running["id"]).exists()
        assert f"{running['id']}-metadata.img" not in instance_pool(cloud)

    def test_the_image_sets_the_default_and_a_launch_overrides_it(self, cloud: Cloud) -> None:
        image = patch(cloud, f"/api/v1/images/{cloud.image_id}", {"metadata_drive": True})
        assert image["metadata_drive"] is True
        by_image = cloud.wait_for(cloud.launch()["id"], "running")
        assert by_image["metadata_drive"] is True
        assert "vdb" in domain_disks(cloud, by_image["id"])
        refused = cloud.wait_for(cloud.launch(metadata_drive=False)["id"], "running")
        assert refused["metadata_drive"] is False
        assert sorted(domain_disks(cloud, refused["id"])) == ["vda"]

    def test_an_image_registered_with_the_default(
        self, cloud: Cloud, make_disk: Callable[..., Path]
    ) -> None:
        disk = make_disk("wakame.qcow2", "qcow2", "32M")
        registered = cloud.client.post(
            "/api/v1/images",
            params={"arch": "x86_64", "metadata_drive": "true"},
            content=disk.read_bytes(),
            headers={**bearer(cloud.admin), "Content-Type": "application/octet-stream"},
        )
        assert registered.status_code == 201, registered.text
        assert registered.json()["metadata_drive"] is True
        launched = cloud.launch(image_id=registered.json()["id"])
        assert launched["metadata_drive"] is True
        bad = cloud.client.post(
            "/api/v1/instances",
            json={"image_id": cloud.image_id, "instance_type": "nano", "metadata_drive": "maybe"},
            headers=bearer(cloud.admin),
        )
        assert bad.status_code == 422 and "metadata_drive" in bad.text

    def test_volumes_never_take_the_drives_device(self, cloud: Cloud) -> None:
        instance = cloud.wait_for(cloud.launch(metadata_drive=True)["id"], "running")
        taken = create(cloud, size_mib=8)
        wait_volume(cloud, taken["id"], "available")
        refused = cloud.client.post(
            f"/api/v1/volumes/{taken['id']}/attach",
            json={"instance_id": instance["id"], "device": "vdb"},
            headers=bearer(cloud.admin),
        )
        assert refused.status_code == 409
        assert "vdb of instance" in refused.json()["detail"]
        assert "metadata drive" in refused.json()["detail"]
        attached = cloud.client.post(
            f"/api/v1/volumes/{taken['id']}/attach",
            json={"instance_id": instance["id"]},
            headers=bearer(cloud.admin),
        )
        assert attached.status_code == 202, attached.text
        assert attached.json()["device"] == "vdc"


class TestContent:
    def test_the_files_are_what_the_metadata_service_answers(  # type: ignore[no-untyped-def]
        self, cloud: Cloud, settings: Settings, guest, tmp_path: Path
    ) -> None:
        pair = cloud.client.post(
            "/api/v1/ssh_key_pairs/generate", json={"name": "laptop"}, headers=bearer(cloud.admin)
        ).json()
        user_data = b"#!/bin/sh\necho \xff from the drive\n"
        running = cloud.wait_for(
            cloud.launch(
                hostname="web1",
                user_data_base64=base64.b64encode(user_data).decode(),
                ssh_key_id=pair["id"],
                metadata_drive=True,
            )["id"],
            "running",
        )
        image = drive_image(settings, running["id"])
        raw = image.read_bytes()
        assert len(raw) == 10 * 1024 * 1024
        # An MBR with one FAT16 partition at 1 MiB, labelled METADATA.
        assert raw[510:512] == b"\x55\xaa"
        partition_type, first_sector = raw[446 + 4], struct.unpack("<I", raw[446 + 8 : 446 + 12])
        assert (partition_type, first_sector[0]) == (0x0E, 2048)
        assert raw[PARTITION + 43 : PARTITION + 54] == b"METADATA   "
        assert raw[PARTITION + 54 : PARTITION + 62] == b"FAT16   "

        files = drive_files(image, tmp_path / "drive")
        mac = running["mac_address"]
        folder = "meta-data/network/interfaces/macs/" + mac.replace(":", "-")
        assert files["meta-data/instance-id"] == running["id"].encode()
        assert files["meta-data/wmi-id"] == files["meta-data/ami-id"] == cloud.image_id.encode()
        assert files["meta-data/local-hostname"] == b"web1.vdc.test"
        assert files["meta-data/local-ipv4"] == running["ip_address"].encode()
        assert files["meta-data/mac"] == mac.encode()
        assert files["meta-data/public-keys/0/openssh-key"] == (pair["public_key"] + "\n").encode()
        assert files[f"{folder}/mac"] == mac.encode()
        assert files[f"{folder}/x-gateway"] == b"10.10.0.1"
        assert files[f"{folder}/x-network"] == b"10.10.0.0"
        assert files[f"{folder}/x-broadcast"] == b"10.10.0.255"
        assert files["user-data"] == user_data

        # Leaf for leaf, byte for byte, the service's answers: only the names differ
        # (vfat has no ":", and a key's folder is its index).
        me = guest(running["ip_address"])
        answers = service_leaves(me)
        answers["user-data"] = me.get("/latest/user-data").content
        on_drive = {
            path.replace(mac, mac.replace(":", "-")): body for path, body in answers.items()
        }
        assert files == on_drive

    def test_without_user_data_there_is_no_user_data_file(
        self, cloud: Cloud, settings: Settings, tmp_path: Path
    ) -> None:
        running = cloud.wait_for(cloud.launch(metadata_drive=True)["id"], "running")
        files = drive_files(drive_image(settings, running["id"]), tmp_path / "drive")
        assert "user-data" not in files
        assert files["meta-data/instance-id"] == running["id"].encode()


class TestStarts:
    def test_rebuilt_at_start_when_the_user_data_changed_and_only_then(
        self, cloud: Cloud, settings: Settings, engine: sa.Engine, tmp_path: Path
    ) -> None:
        instance_id = cloud.wait_for(
            cloud.launch(metadata_drive=True, user_data="first")["id"], "running"
        )["id"]
        image = drive_image(settings, instance_id)

        def built() -> tuple[int, int, str]:
            with engine.connect() as connection:
                stored = connection.execute(
                    sa.text("SELECT metadata_drive_digest FROM instances WHERE id = :i"),
                    {"i": instance_id},
                ).scalar_one()
            return image.stat().st_ino, image.stat().st_mtime_ns, stored

        first = built()
        assert len(first[2]) == 64

        # A stop and a start with the same facts: the drive stays as it was.
        cloud.action(instance_id, "stop")
        cloud.wait_for(instance_id, "stopped")
        cloud.action(instance_id, "start")
        cloud.wait_for(instance_id, "running")
        assert built() == first

        # New user-data (refused while it runs, as EC2 does), then a start: a new drive.
        running = cloud.client.patch(
            f"/api/v1/instances/{instance_id}",
            json={"user_data": "second"},
            headers=bearer(cloud.admin),
        )
        assert running.status_code == 409
        assert "only while it is stopped" in running.json()["detail"]
        cloud.action(instance_id, "stop")
        cloud.wait_for(instance_id, "stopped")
        shown = patch(cloud, f"/api/v1/instances/{instance_id}", {"user_data": "second"})
        assert shown["user_data_size"] == len("second")
        assert built() == first  # nothing happens before the start
        cloud.action(instance_id, "start")
        cloud.wait_for(instance_id, "running")
        second = built()
        assert second[0] != first[0] and second[2] != first[2]
        assert drive_files(image, tmp_path / "drive")["user-data"] == b"second"

    def test_a_running_guest_keeps_the_drive_it_booted_with(
        self, cloud: Cloud, settings: Settings, engine: sa.Engine
    ) -> None:
        """A job that runs ensure_running again on a running guest (a launch resumed after
        a crash) must not replace the file under it: the new facts wait for its next start."""
        instance_id = cloud.wait_for(cloud.launch(metadata_drive=True)["id"], "running")["id"]
        image = drive_image(settings, instance_id)
        before = image.stat().st_ino
        with engine.begin() as connection:
            connection.execute(
                sa.text("UPDATE instances SET user_data = :u WHERE id = :i"),
                {"u": b"changed behind its back", "i": instance_id},
            )
        driver = HostDriver(cloud.host_uri)
        ctx = JobContext(settings, engine)
        disk = metadata_drive.ensure_drive(ctx, instance_id, driver)
        assert disk is not None and disk.target == "vdb" and disk.read_only
        assert image.stat().st_ino == before
        POOL.get(cloud.host_uri).lookupByName(instance_id).destroy()  # off: now it is rebuilt
        metadata_drive.ensure_drive(ctx, instance_id, driver)
        assert image.stat().st_ino != before

    def test_user_data_patch_is_validated(self, cloud: Cloud) -> None:
        instance_id = cloud.wait_for(cloud.launch()["id"], "running")["id"]
        for body, fragment in (
            ({"user_data": "a", "user_data_base64": "YQ=="}, "not both"),
            ({"user_data_base64": "not base64!"}, "base64"),
            ({"user_data": "x" * (16 * 1024 + 1)}, "16384 bytes"),
        ):
            response = cloud.client.patch(
                f"/api/v1/instances/{instance_id}", json=body, headers=bearer(cloud.admin)
            )
            assert response.status_code == 422, response.text
            assert fragment in response.text


class TestTerminate:
    def test_terminate_removes_it_and_doctor_finds_nothing(
        self, cloud: Cloud, settings: Settings, engine: sa.Engine
    ) -> None:
        instance_id = cloud.wait_for(cloud.launch(metadata_drive=True)["id"], "running")["id"]
        with Session(engine) as session:
            assert doctor.examine(session, settings) == []
        cloud.client.delete(f"/api/v1/instances/{instance_id}", headers=bearer(cloud.admin))
        cloud.wait_for(instance_id, "terminated")
        assert f"{instance_id}-metadata.img" not in instance_pool(cloud)
        assert not drive_image(settings, instance_id).exists()
        with Session(engine) as session:
            assert doctor.examine(session, settings) == []

    def test_doctor_names_a_drive_left_behind_or_missing(
        self, cloud: Cloud, settings: Settings, engine: sa.Engine
    ) -> None:
        instance_id = cloud.wait_for(cloud.launch(metadata_drive=True)["id"], "running")["id"]
        (settings.data_dir / "metadata-drives" / "i-gone0000.img").write_bytes(b"")
        pool = POOL.get(cloud.host_uri).storagePoolLookupByName("vdc-instances")
        pool.storageVolLookupByName(f"{instance_id}-metadata.img").delete(0)
        with Session(engine) as session:
            found = {(f.kind, f.name, f.problem) for f in doctor.examine(session, settings)}
        assert found == {
            ("metadata drive", "i-gone0000.img", "orphan"),
            ("volume", f"vdc-instances/{instance_id}-metadata.img", "missing"),
        }


class TestWebUi:
    def test_launch_form_choice_and_the_instance_page(self, cloud: Cloud) -> None:
        csrf = sign_in(cloud.client, cloud.admin)
        form = cloud.client.get("/instances/new").text
        assert 'name="metadata_drive"' in form and "As the image says" in form
        launched = cloud.client.post(
            "/instances/new",
            data={
                "csrf": csrf,
                "image_id": cloud.image_id,
                "instance_type": "nano",
                "metadata_drive": "yes",
            },
            follow_redirects=False,
        )
        assert launched.status_code == 303, launched.text
        instance_id = launched.headers["location"].split("?")[0].rsplit("/", 1)[1]
        assert cloud.show(instance_id)["metadata_drive"] is True
        page = cloud.client.get(f"/instances/{instance_id}").text
        assert "<dt>Metadata drive</dt><dd>yes (vdb, LABEL=METADATA)</dd>" in page

        refused = cloud.client.post(
            "/instances/new",
            data={"csrf": csrf, "image_id": cloud.image_id, "metadata_drive": "maybe"},
        )
        assert refused.status_code == 400
        assert "metadata drive: &#39;maybe&#39; is not a choice" in refused.text

    def test_image_page_sets_the_default(self, cloud: Cloud) -> None:
        csrf = sign_in(cloud.client, cloud.admin)
        assert 'name="metadata_drive"' in cloud.client.get(f"/images/{cloud.image_id}").text
        saved = cloud.client.post(
            f"/images/{cloud.image_id}",
            data={"csrf": csrf, "display_name": "wakame", "metadata_drive": "on"},
            follow_redirects=False,
        )
        assert saved.status_code == 303, saved.text
        image = cloud.client.get(f"/api/v1/images/{cloud.image_id}", headers=bearer(cloud.admin))
        assert image.json()["metadata_drive"] is True
        assert (
            "checked"
            in cloud.client.get(f"/images/{cloud.image_id}").text.split('name="metadata_drive"')[1][
                :20
            ]
        )

"""/api/v1/images through HTTP, on SQLite and on PostgreSQL: upload, list, show, update,
delete, every refusal, and tenancy between accounts."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.services.images.images import PARTIAL_PREFIX
from tests.conftest import Keys, bearer

OCTET = {"Content-Type": "application/octet-stream"}


def upload(client: TestClient, key: str, path: Path, **params: object):  # type: ignore[no-untyped-def]
    params.setdefault("arch", "x86_64")
    return client.post(
        "/api/v1/images", params=params, content=path.read_bytes(), headers={**bearer(key), **OCTET}
    )


def stored_files(settings: Settings) -> list[str]:
    return (
        sorted(p.name for p in settings.image_dir.iterdir()) if settings.image_dir.exists() else []
    )


class TestUpload:
    def test_qcow2_upload_records_format_size_and_digest(
        self, client: TestClient, keys: Keys, make_disk: Callable[..., Path], settings: Settings
    ) -> None:
        disk = make_disk("a.qcow2", "qcow2", "1G")
        response = upload(client, keys.new("alice"), disk, description="Ubuntu 10.04 64bit")
        assert response.status_code == 201, response.text
        image = response.json()
        assert image["id"].startswith("wmi-")
        assert image["format"] == "qcow2"
        assert image["virtual_size"] == 1024**3
        assert image["sha256"] == hashlib.sha256(disk.read_bytes()).hexdigest()
        assert image["account_id"] == keys.ids["alice"]
        assert image["source"] == "upload"
        assert "file_name" not in image and "path" not in image
        assert stored_files(settings) == [f"{image['id']}.qcow2"]

    @pytest.mark.parametrize("fmt", ["vmdk", "vdi", "vhdx", "vpc", "qed", "parallels"])
    def test_every_format_the_readme_lists_is_accepted_and_stored_as_is(
        self,
        client: TestClient,
        keys: Keys,
        make_disk: Callable[..., Path],
        settings: Settings,
        fmt: str,
    ) -> None:
        disk = make_disk(f"d.{fmt}", fmt, "32M")
        response = upload(client, keys.new("alice"), disk)
        assert response.status_code == 201, response.text
        image = response.json()
        info = json.loads(
            subprocess.run(
                ["qemu-img", "info", "--output=json", "-f", fmt, str(disk)],
                check=True,
                capture_output=True,
            ).stdout
        )
        assert (image["format"], image["virtual_size"]) == (fmt, info["virtual-size"])
        assert image["virtual_size"] >= 32 * 1024**2  # vpc rounds up to its geometry
        stored = settings.image_dir / f"{image['id']}.{fmt}"
        assert stored_files(settings) == [stored.name]
        assert stored.read_bytes() == disk.read_bytes()
        assert image["sha256"] == hashlib.sha256(disk.read_bytes()).hexdigest()

    def test_raw_upload_converted_to_qcow2(
        self, client: TestClient, keys: Keys, make_disk: Callable[..., Path], settings: Settings
    ) -> None:
        disk = make_disk("b.raw", "raw", "8M")
        image = upload(client, keys.new("alice"), disk, convert="qcow2").json()
        assert image["format"] == "qcow2"
        assert image["virtual_size"] == 8 * 1024**2
        stored = settings.image_dir / f"{image['id']}.qcow2"
        assert image["sha256"] == hashlib.sha256(stored.read_bytes()).hexdigest()

    # A small file (under the 1 MiB body limit, full of NUL bytes) and a larger one.
    @pytest.mark.parametrize(("name", "fmt"), [("small.qcow2", "qcow2"), ("big.raw", "raw")])
    def test_a_put_says_uploads_are_posts(
        self, client: TestClient, keys: Keys, make_disk: Callable[..., Path], name: str, fmt: str
    ) -> None:
        """`curl -T FILE` alone sends a PUT: the answer says what to do, whatever the file."""
        disk = make_disk(name, fmt, "2M")
        response = client.put(
            "/api/v1/images",
            params={"arch": "x86_64"},
            content=disk.read_bytes(),
            headers={**bearer(keys.admin), **OCTET},
        )
        assert response.status_code == 405, response.text
        assert "uploaded with POST (curl -X POST -T FILE" in response.json()["detail"]
        assert response.headers["allow"] == "GET, POST"

    @pytest.mark.parametrize(
        ("content", "fragment"),
        [
            (b"hello, I am a text file\n", "not a whole number of 512-byte sectors"),
            (b"\x1f\x8b\x08\x00" + bytes(1020), "gzip archive"),
            (b"#!/bin/sh\n" + bytes(1014), "a script"),
        ],
    )
    def test_files_that_are_not_disk_images_are_400(
        self,
        client: TestClient,
        keys: Keys,
        import_dir: Path,
        settings: Settings,
        content: bytes,
        fragment: str,
    ) -> None:
        path = import_dir / "junk.img"
        path.write_bytes(content)
        response = upload(client, keys.new("alice"), path)
        assert response.status_code == 400
        assert response.json()["type"] == "invalid_image"
        assert fragment in response.json()["detail"]
        assert stored_files(settings) == []

    def test_backing_file_is_refused(
        self, client: TestClient, keys: Keys, make_disk: Callable[..., Path], settings: Settings
    ) -> None:
        base = make_disk("base.qcow2")
        overlay = make_disk("overlay.qcow2", "qcow2", "64M", "-b", str(base), "-F", "qcow2")
        response = upload(client, keys.new("alice"), overlay)
        assert response.status_code == 400
        assert "backing file" in response.json()["detail"]
        assert stored_files(settings) == []

    def test_external_data_file_is_refused(
        self, client: TestClient, keys: Keys, make_disk: Callable[..., Path], import_dir: Path
    ) -> None:
        disk = make_disk("ext.qcow2", "qcow2", "64M", "-o", f"data_file={import_dir / 'ext.data'}")
        response = upload(client, keys.new("alice"), disk)
        assert response.status_code == 400
        assert "data file" in response.json()["detail"]

    def test_unknown_arch_is_400_before_reading_the_body(
        self, client: TestClient, keys: Keys, make_disk: Callable[..., Path]
    ) -> None:
        response = upload(client, keys.new("alice"), make_disk("a.qcow2"), arch="sparc")
        assert response.status_code == 400
        assert "unknown arch" in response.json()["detail"]

    def test_over_the_size_limit_is_413_and_leaves_nothing(
        self, client: TestClient, keys: Keys, settings: Settings
    ) -> None:
        key = keys.new("alice")
        too_big = bytes(settings.max_image_size + 512)
        declared = client.post(
            "/api/v1/images",
            params={"arch": "x86_64"},
            content=too_big,
            headers={**bearer(key), **OCTET},
        )
        assert declared.status_code == 413

        def chunks():  # no Content-Length: the limit must hold while streaming
            for _ in range(settings.max_image_size // (1024 * 1024) + 1):
                yield bytes(1024 * 1024)

        streamed = client.post(
            "/api/v1/images",
            params={"arch": "x86_64"},
            content=chunks(),
            headers={**bearer(key), **OCTET},
        )
        assert streamed.status_code == 413
        assert not [n for n in stored_files(settings) if n.startswith(PARTIAL_PREFIX)]
        assert stored_files(settings) == []

    def test_wrong_content_type_is_415(self, client: TestClient, keys: Keys) -> None:
        response = client.post(
            "/api/v1/images",
            params={"arch": "x86_64"},
            json={"file": "x"},
            headers=bearer(keys.new("a")),
        )
        assert response.status_code == 415

    def test_empty_body_is_400(self, client: TestClient, keys: Keys) -> None:
        response = client.post(
            "/api/v1/images",
            params={"arch": "x86_64"},
            content=b"",
            headers={**bearer(keys.new("a")), **OCTET},
        )
        assert response.status_code == 400

    def test_only_admin_registers_for_another_account(
        self, client: TestClient, keys: Keys, make_disk: Callable[..., Path]
    ) -> None:
        disk = make_disk("a.qcow2")
        user = upload(client, keys.new("alice"), disk, account_id="a-shpoolxx", is_public=True)
        assert user.status_code == 403
        admin = upload(client, keys.admin, disk, account_id="a-shpoolxx", is_public=True)
        assert admin.status_code == 201
        assert admin.json()["account_id"] == "a-shpoolxx"


class TestListing:
    def test_envelope_paging_sorting_and_filters(
        self, client: TestClient, keys: Keys, make_disk: Callable[..., Path]
    ) -> None:
        key = keys.new("alice")
        ids = []
        for n, (fmt, arch) in enumerate(
            [("qcow2", "x86_64"), ("raw", "x86_64"), ("qcow2", "i686")]
        ):
            disk = make_disk(f"d{n}.{fmt}", fmt, f"{n + 1}M")
            ids.append(upload(client, key, disk, arch=arch, display_name=f"img-{n}").json()["id"])

        page = client.get(
            "/api/v1/images", params={"limit": 2, "offset": 0}, headers=bearer(key)
        ).json()
        assert set(page) == {"items", "total", "limit", "offset"}
        assert (page["total"], page["limit"], page["offset"], len(page["items"])) == (3, 2, 0, 2)
        rest = client.get(
            "/api/v1/images", params={"limit": 2, "offset": 2}, headers=bearer(key)
        ).json()
        assert [i["id"] for i in page["items"] + rest["items"]] == ids

        by_size = client.get(
            "/api/v1/images", params={"sort": "-virtual_size"}, headers=bearer(key)
        ).json()
        assert [i["display_name"] for i in by_size["items"]] == ["img-2", "img-1", "img-0"]

        raw = client.get("/api/v1/images", params={"format": "raw"}, headers=bearer(key)).json()
        assert [i["id"] for i in raw["items"]] == [ids[1]] and raw["total"] == 1
        i686 = client.get("/api/v1/images", params={"arch": "i686"}, headers=bearer(key)).json()
        assert [i["id"] for i in i686["items"]] == [ids[2]]

    def test_bad_paging_and_sort_are_4xx(self, client: TestClient, keys: Keys) -> None:
        key = keys.new("alice")
        assert (
            client.get(
                "/api/v1/images", params={"sort": "sha256; drop"}, headers=bearer(key)
            ).status_code
            == 400
        )
        assert (
            client.get("/api/v1/images", params={"limit": 0}, headers=bearer(key)).status_code
            == 422
        )
        assert (
            client.get("/api/v1/images", params={"offset": -1}, headers=bearer(key)).status_code
            == 422
        )


class TestChanging:
    def test_update_and_delete(
        self, client: TestClient, keys: Keys, make_disk: Callable[..., Path], settings: Settings
    ) -> None:
        key = keys.new("alice")
        image = upload(client, key, make_disk("a.qcow2")).json()
        changed = client.patch(
            f"/api/v1/images/{image['id']}",
            json={"display_name": "lucid", "description": "Ubuntu 10.04"},
            headers=bearer(key),
        )
        assert changed.status_code == 200
        body = changed.json()
        assert (body["display_name"], body["description"], body["is_public"]) == (
            "lucid",
            "Ubuntu 10.04",
            False,
        )
        published = client.patch(  # only an admin publishes
            f"/api/v1/images/{image['id']}", json={"is_public": True}, headers=bearer(keys.admin)
        )
        assert published.status_code == 200 and published.json()["is_public"] is True
        assert body["updated_at"] >= image["updated_at"]
        shown = client.get(f"/api/v1/images/{image['id']}", headers=bearer(key)).json()
        assert shown["display_name"] == "lucid"

        assert (
            client.delete(f"/api/v1/images/{image['id']}", headers=bearer(key)).status_code == 204
        )
        assert client.get(f"/api/v1/images/{image['id']}", headers=bearer(key)).status_code == 404
        assert stored_files(settings) == []

    def test_update_refuses_unknown_fields_and_nulls(
        self, client: TestClient, keys: Keys, make_disk: Callable[..., Path]
    ) -> None:
        key = keys.new("alice")
        image = upload(client, key, make_disk("a.qcow2")).json()
        url = f"/api/v1/images/{image['id']}"
        # Each refused body also carries a valid change: refused means none of it applied.
        for body, status in (
            ({"display_name": "renamed", "account_id": "a-shpoolxx"}, 422),  # not a field
            ({"display_name": "renamed", "file_name": "../../etc/shadow"}, 422),  # hidden one
            ({"display_name": "renamed", "sha256": "0" * 64, "format": "raw"}, 422),
            ({"display_name": "renamed", "description": None}, 400),  # null: never "clear"
            ({"display_name": None}, 400),
            ({"display_name": "renamed", "is_public": "maybe"}, 422),
        ):
            refused = client.patch(url, json=body, headers=bearer(key))
            assert refused.status_code == status, (body, refused.text)
            assert client.get(url, headers=bearer(key)).json() == image, body
        unknown = client.patch(url, json={"owner": "bob"}, headers=bearer(key))
        assert unknown.json()["type"] == "validation_error"
        assert "owner" in unknown.json()["detail"]

    def test_missing_image_is_404(self, client: TestClient, keys: Keys) -> None:
        response = client.get("/api/v1/images/wmi-nothere0", headers=bearer(keys.new("alice")))
        assert response.status_code == 404
        assert response.json() == {"type": "not_found", "detail": "image wmi-nothere0 not found"}


class TestTenancy:
    def test_private_image_of_another_account_is_404_for_every_action(
        self, client: TestClient, keys: Keys, make_disk: Callable[..., Path], settings: Settings
    ) -> None:
        alice, bob = keys.new("alice"), keys.new("bob")
        image = upload(client, alice, make_disk("a.qcow2")).json()
        url = f"/api/v1/images/{image['id']}"
        assert client.get(url, headers=bearer(bob)).status_code == 404
        assert (
            client.patch(url, json={"display_name": "mine"}, headers=bearer(bob)).status_code == 404
        )
        assert client.delete(url, headers=bearer(bob)).status_code == 404
        listed = client.get("/api/v1/images", headers=bearer(bob)).json()
        assert image["id"] not in [i["id"] for i in listed["items"]]
        # ...and nothing changed for alice.
        assert (
            client.get(url, headers=bearer(alice)).json()["display_name"] == image["display_name"]
        )
        assert stored_files(settings) == [f"{image['id']}.qcow2"]

    def test_shared_pool_public_images_are_seen_by_everyone_but_changed_by_none(
        self, client: TestClient, keys: Keys, make_disk: Callable[..., Path]
    ) -> None:
        alice, bob = keys.new("alice"), keys.new("bob")
        shared = upload(
            client, keys.admin, make_disk("s.qcow2"), account_id="a-shpoolxx", is_public=True
        ).json()
        hidden = upload(client, keys.admin, make_disk("h.qcow2"), account_id="a-shpoolxx").json()
        for key in (alice, bob):
            ids = [
                i["id"] for i in client.get("/api/v1/images", headers=bearer(key)).json()["items"]
            ]
            assert shared["id"] in ids
            assert hidden["id"] not in ids
            assert (
                client.get(f"/api/v1/images/{shared['id']}", headers=bearer(key)).status_code == 200
            )
            refused = client.patch(
                f"/api/v1/images/{shared['id']}", json={"is_public": False}, headers=bearer(key)
            )
            assert refused.status_code == 403
            assert (
                client.delete(f"/api/v1/images/{shared['id']}", headers=bearer(key)).status_code
                == 403
            )
        assert (
            client.get(f"/api/v1/images/{shared['id']}", headers=bearer(alice)).json()["is_public"]
            is True
        )

    def test_admin_sees_all_and_filters_by_account(
        self, client: TestClient, keys: Keys, make_disk: Callable[..., Path]
    ) -> None:
        alice = keys.new("alice")
        mine = upload(client, alice, make_disk("a.qcow2")).json()
        listed = client.get(
            "/api/v1/images", params={"account_id": keys.ids["alice"]}, headers=bearer(keys.admin)
        )
        assert [i["id"] for i in listed.json()["items"]] == [mine["id"]]

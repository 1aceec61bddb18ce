"""What an API key, a tenant or a crafted file must not be able to do (issue: security):
run programs through a host URI, read host files through its error, expand a tiny image
into a huge one, claim a petabyte root disk, publish images into everyone's list, or learn
a host's address from an instance's error. On SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from hypervisor.driver import HostDriver
from hypervisor.errors import HypervisorError
from metadata.app import create_metadata_app
from tests.conftest import Keys, bearer
from tests.integration.cloud import OCTET, Cloud, build_cloud

HOSTS = "/api/v1/host_nodes"


@pytest.fixture
def strict_client(settings: Settings) -> TestClient:
    """vdc as deployed: no test:// hosts, no extra URI parameters."""
    strict = settings.model_copy(update={"allow_test_hosts": False, "host_uri_params": ""})
    with TestClient(create_app(strict)) as client:
        yield client  # type: ignore[misc]


@pytest.fixture
def cloud(client: TestClient, keys: Keys, test_host_uri, make_disk: Callable[..., Path]) -> Cloud:  # type: ignore[no-untyped-def]
    return build_cloud(client, keys, test_host_uri(), make_disk)


class TestHostUris:
    def test_a_uri_cannot_run_a_program(
        self, strict_client: TestClient, keys: Keys, tmp_path: Path
    ) -> None:
        marker = tmp_path / "ran"
        script = tmp_path / "x.sh"
        script.write_text(f"#!/bin/sh\ntouch {marker}\n")
        script.chmod(0o755)
        for uri in (
            f"qemu+ext:///system?command={script}",
            f"qemu+ssh://h.example/system?command={script}",
            f"qemu+ssh://h.example/system?netcat={script}",
            "qemu+ssh://h.example/system?proxy=netcat",
            f"qemu:///system?socket={tmp_path}/sock",
        ):
            refused = strict_client.post(
                HOSTS,
                json={"name": "h", "uri": uri, "cpu_cores": 1, "memory_size": 64},
                headers=bearer(keys.admin),
            )
            assert refused.status_code == 400, (uri, refused.text)
            assert "not allowed" in refused.json()["detail"] or "scheme" in refused.json()["detail"]
        assert not marker.exists()
        listed = strict_client.get(HOSTS, headers=bearer(keys.admin)).json()
        assert listed["total"] == 0  # nothing stored: the sync loop has nothing to re-run

    @pytest.mark.parametrize(
        ("uri", "says"),
        [
            ("test:///etc/passwd", "VDC_ALLOW_TEST_HOSTS"),
            ("xen:///system", "unsupported host URI scheme"),
            ("qemu:///session", "/system"),
            ("qemu://somewhere/system", "qemu+ssh"),
            ("qemu+ssh:///system", "needs a host"),
            ("qemu:///system#x", "fragment"),
            ("qemu:///system\n", "line breaks"),
        ],
    )
    def test_unsupported_uris_are_refused_without_echoing_anything(
        self, strict_client: TestClient, keys: Keys, uri: str, says: str
    ) -> None:
        refused = strict_client.post(
            HOSTS, json={"name": "h", "uri": uri}, headers=bearer(keys.admin)
        )
        assert refused.status_code in (400, 422), refused.text
        assert "root:" not in refused.text
        if refused.status_code == 400:
            assert says in refused.json()["detail"]

    def test_an_operator_may_allow_more_parameters(self, settings: Settings, keys: Keys) -> None:
        lenient = settings.model_copy(
            update={"allow_test_hosts": False, "host_uri_params": "socket"}
        )
        with TestClient(create_app(lenient)) as client:
            added = client.post(
                HOSTS,
                json={
                    "name": "h",
                    "uri": "qemu:///system?socket=/nonexistent/sock",
                    "cpu_cores": 1,
                    "memory_size": 64,
                },
                headers=bearer(keys.admin),
            )
        assert added.status_code == 201, added.text
        assert added.json()["status"] == "offline"


def _bomb(import_dir: Path, name: str, megabytes: int) -> Path:
    """A qcow2 of a few hundred KB whose zstd clusters hold `megabytes` MiB of data."""
    raw = import_dir / f"{name}.raw"
    with raw.open("wb") as out:
        block = b"vdc-bomb" * (1024 * 1024 // 8)
        for _ in range(megabytes):
            out.write(block)
    bomb = import_dir / name
    subprocess.run(
        [
            "qemu-img",
            "convert",
            "-c",
            "-O",
            "qcow2",
            "-o",
            "compression_type=zstd",
            str(raw),
            str(bomb),
        ],
        check=True,
        capture_output=True,
    )
    raw.unlink()
    return bomb


class TestCraftedImages:
    def test_a_decompression_bomb_is_refused_before_it_is_written(
        self, client: TestClient, keys: Keys, import_dir: Path, settings: Settings
    ) -> None:
        bomb = _bomb(import_dir, "bomb.qcow2", 512)  # over the suite's 256 MiB limit
        assert bomb.stat().st_size < 2 * 1024 * 1024
        refused = client.post(
            "/api/v1/images",
            params={"arch": "x86_64", "convert": "raw"},
            content=bomb.read_bytes(),
            headers={**bearer(keys.admin), **OCTET},
        )
        assert refused.status_code == 413, refused.text
        assert "expands to 536870912 bytes" in refused.json()["detail"]
        assert client.get("/api/v1/images", headers=bearer(keys.admin)).json()["total"] == 0
        leftovers = list(settings.image_dir.iterdir()) if settings.image_dir.exists() else []
        assert leftovers == []

    def test_a_root_disk_obeys_the_disk_size_limit(self, cloud: Cloud, make_disk) -> None:  # type: ignore[no-untyped-def]
        huge = make_disk("huge.qcow2", "qcow2", "16T")  # a few hundred KB on disk
        image = cloud.client.post(
            "/api/v1/images",
            params={"arch": "x86_64"},
            content=huge.read_bytes(),
            headers={**bearer(cloud.admin), **OCTET},
        ).json()
        refused = cloud.client.post(
            "/api/v1/instances",
            json={"image_id": image["id"], "instance_type": "nano"},
            headers=bearer(cloud.admin),
        )
        assert refused.status_code == 400, refused.text
        assert "VDC_MAX_VOLUME_SIZE" in refused.json()["detail"]
        listed = cloud.client.get("/api/v1/instances", headers=bearer(cloud.admin)).json()
        assert listed["total"] == 0


class TestPublicImages:
    def test_only_admins_publish(
        self, client: TestClient, keys: Keys, make_disk: Callable[..., Path]
    ) -> None:
        alice = keys.new("alice")
        disk = make_disk("a.qcow2").read_bytes()
        published = client.post(
            "/api/v1/images",
            params={"arch": "x86_64", "is_public": "true", "display_name": "ubuntu-22.04"},
            content=disk,
            headers={**bearer(alice), **OCTET},
        )
        assert published.status_code == 403, published.text
        own = client.post(
            "/api/v1/images",
            params={"arch": "x86_64"},
            content=disk,
            headers={**bearer(alice), **OCTET},
        ).json()
        flipped = client.patch(
            f"/api/v1/images/{own['id']}", json={"is_public": True}, headers=bearer(alice)
        )
        assert flipped.status_code == 403
        bob = keys.new("bob")
        assert client.get("/api/v1/images", headers=bearer(bob)).json()["total"] == 0
        by_admin = client.patch(
            f"/api/v1/images/{own['id']}", json={"is_public": True}, headers=bearer(keys.admin)
        )
        assert by_admin.status_code == 200 and by_admin.json()["is_public"] is True


def test_an_instance_error_names_the_host_not_its_address(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: HostDriver, spec: object) -> None:
        raise HypervisorError(f"unable to connect to server at '{self.uri}': Connection refused")

    monkeypatch.setattr(HostDriver, "ensure_domain", refuse)
    alice = cloud.keys.new("alice")
    launched = cloud.launch(alice)
    failed = cloud.wait_for(launched["id"], "error", key=alice)
    assert cloud.host_uri not in failed["state_reason"]
    assert "host host1" in failed["state_reason"]


class TestDocs:
    @pytest.mark.parametrize("page", ["/docs", "/redoc"])
    def test_docs_cannot_be_framed(self, client: TestClient, page: str) -> None:
        response = client.get(page)
        assert response.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]

    def test_swagger_ui_does_not_keep_the_key(self, client: TestClient) -> None:
        assert '"persistAuthorization": false' in client.get("/docs").text


class TestMetadataOddInput:
    @pytest.fixture
    def metadata(self, engine: sa.Engine) -> TestClient:
        app = create_metadata_app(engine, "vdc-1", token_secret="t" * 32, proxy_secret="p" * 16)
        return TestClient(app, base_url="http://10.10.0.1:8775", client=("10.10.0.5", 4000))

    def test_a_non_ascii_ttl_is_a_400(self, metadata: TestClient) -> None:
        answer = metadata.put(
            "/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "²".encode()}
        )
        assert answer.status_code == 400

    def test_non_ascii_signatures_and_tokens_are_refused_not_crashed(
        self, metadata: TestClient
    ) -> None:
        forged = metadata.get(
            "/latest/meta-data/instance-id",
            headers={
                "X-Forwarded-For": "10.10.0.5",
                "X-Instance-ID": "i-00000000",
                "X-Instance-ID-Signature": ("é" * 64).encode(),
            },
        )
        assert forged.status_code == 404

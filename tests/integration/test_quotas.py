"""Quotas enforced over HTTP, on SQLite and PostgreSQL: each limit refuses with a 409 that
names the limit, the usage and what was asked; a refused request creates nothing; releasing
frees the slot; and requests racing for an account's last slot do not both win."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from httpx import Response

from app.config import Settings
from app.services.quotas import number_text
from tests.conftest import Keys, bearer
from tests.integration.cloud import OCTET, Cloud, build_cloud
from tests.integration.test_volumes import wait_volume

ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
# Every table a create could add a row to, and the image store: a refusal changes none.
TABLES = (
    "instances",
    "network_interfaces",
    "instance_security_groups",
    "volumes",
    "jobs",
    "images",
    "security_groups",
    "security_group_rules",
    "ssh_key_pairs",
)


@pytest.fixture
def cloud(client: TestClient, keys: Keys, test_host_uri, make_disk: Callable[..., Path]) -> Cloud:  # type: ignore[no-untyped-def]
    return build_cloud(client, keys, test_host_uri(), make_disk)


@pytest.fixture
def alice(cloud: Cloud) -> str:
    return cloud.keys.new("alice")


def set_quota(cloud: Cloud, name: str, **limits: int | None) -> dict[str, Any]:
    response = cloud.client.patch(
        f"/api/v1/accounts/{cloud.keys.ids[name]}/quota", json=limits, headers=bearer(cloud.admin)
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def state_of(engine: sa.Engine, settings: Settings) -> dict[str, Any]:
    with engine.connect() as connection:
        rows = {t: connection.scalar(sa.text(f"SELECT count(*) FROM {t}")) for t in TABLES}
    files = (
        sorted(p.name for p in settings.image_dir.iterdir()) if settings.image_dir.exists() else []
    )
    return {**rows, "image files": files}


def refused(response: Response, detail: str) -> None:
    assert response.status_code == 409, response.text
    assert response.json() == {
        "type": "quota_exceeded",
        "detail": f"quota exceeded: {detail} (ask an admin to raise it)",
    }


def post(cloud: Cloud, key: str, path: str, body: dict[str, Any]) -> Response:
    return cloud.client.post(f"/api/v1/{path}", json=body, headers=bearer(key))


def delete(cloud: Cloud, key: str, path: str) -> int:
    return cloud.client.delete(f"/api/v1/{path}", headers=bearer(key)).status_code


def launch(cloud: Cloud, key: str, **body: Any) -> Response:
    body.setdefault("image_id", cloud.image_id)
    body.setdefault("instance_type", "nano")  # 1 core, 128 MiB, the image's 64 MiB disk
    return post(cloud, key, "instances", body)


def upload(cloud: Cloud, key: str, content: Any, **params: str) -> Response:
    return cloud.client.post(
        "/api/v1/images",
        params={"arch": "x86_64", **params},
        content=content,
        headers={**bearer(key), **OCTET},
    )


# --- each limit ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "fill", "asked", "detail"),
    [
        ({"instances": 2}, [{}, {}], {}, "2 instances allowed, 2 in use, 1 asked"),
        (
            {"cores": 3},
            [{"cpu_cores": 2, "memory_size": 128}],
            {"cpu_cores": 2, "memory_size": 128},
            "3 cores allowed, 2 in use, 2 asked",
        ),
        ({"memory_mib": 256}, [{}, {}], {}, "256 MiB of memory allowed, 256 in use, 128 asked"),
        # The root disk counts: the image's 64 MiB (1/16 GiB) with each instance.
        (
            {"volume_gib": 2},
            [{"volumes": [{"size_gib": 1}]}],
            {"volumes": [{"size_gib": 1}]},
            "2 GiB of volumes allowed, 1.06 in use, 1.06 asked",
        ),
    ],
)
def test_a_launch_over_a_limit_is_refused_and_creates_nothing(
    cloud: Cloud,
    alice: str,
    engine: sa.Engine,
    settings: Settings,
    limits: dict[str, int],
    fill: list[dict[str, Any]],
    asked: dict[str, Any],
    detail: str,
) -> None:
    set_quota(cloud, "alice", **limits)
    for body in fill:
        assert launch(cloud, alice, **body).status_code == 202
    before = state_of(engine, settings)
    refused(launch(cloud, alice, **asked), detail)
    assert state_of(engine, settings) == before
    # Another account is not held back by alice's quota.
    assert launch(cloud, cloud.keys.new("bob"), **asked).status_code == 202


def test_terminating_frees_the_slot_at_once(cloud: Cloud, alice: str) -> None:
    set_quota(cloud, "alice", instances=1)
    first = launch(cloud, alice).json()
    refused(launch(cloud, alice), "1 instance allowed, 1 in use, 1 asked")
    assert delete(cloud, alice, f"instances/{first['id']}") == 202
    # Being terminated already counts as gone: a terminate cannot be taken back.
    second = launch(cloud, alice)
    assert second.status_code == 202, second.text
    cloud.wait_for(first["id"], "terminated", key=alice)
    cloud.wait_for(second.json()["id"], "running", key=alice)


def test_volume_gib_counts_volumes_until_they_are_deleted(
    cloud: Cloud, alice: str, engine: sa.Engine, settings: Settings
) -> None:
    set_quota(cloud, "alice", volume_gib=1)
    refused(
        post(cloud, alice, "volumes", {"size_gib": 2}),
        "1 GiB of volumes allowed, 0 in use, 2 asked",
    )
    half = post(cloud, alice, "volumes", {"size_mib": 512})
    assert half.status_code == 202, half.text
    before = state_of(engine, settings)
    refused(
        post(cloud, alice, "volumes", {"size_mib": 600}),
        "1 GiB of volumes allowed, 0.5 in use, 0.59 asked",
    )
    assert state_of(engine, settings) == before
    wait_volume(cloud, half.json()["id"], "available", alice)
    assert delete(cloud, alice, f"volumes/{half.json()['id']}") == 202
    # Being deleted already counts as gone.
    assert post(cloud, alice, "volumes", {"size_gib": 1}).status_code == 202


def test_images_count_and_gib(
    cloud: Cloud,
    alice: str,
    engine: sa.Engine,
    settings: Settings,
    make_disk: Callable[..., Path],
) -> None:
    disk = make_disk("small.qcow2", "qcow2", "64M").read_bytes()
    set_quota(cloud, "alice", images=1)
    first = upload(cloud, alice, disk)
    assert first.status_code == 201, first.text
    before = state_of(engine, settings)
    refused(upload(cloud, alice, disk), "1 image allowed, 1 in use, 1 asked")
    assert state_of(engine, settings) == before
    assert delete(cloud, alice, f"images/{first.json()['id']}") == 204

    set_quota(cloud, "alice", images=None, image_gib=0)
    before = state_of(engine, settings)
    # Refused before the body is read (Content-Length), and after it is stored when the
    # size was not known up front (a chunked body), leaving no file behind either way.
    size = number_text(len(disk) / 1024**3)  # 0.00018: a qcow2 file is small
    detail = f"0 GiB of images allowed, 0 in use, {size} asked"
    refused(upload(cloud, alice, disk), detail)
    refused(upload(cloud, alice, iter([disk])), detail)
    assert state_of(engine, settings) == before


def test_security_groups_besides_default(
    cloud: Cloud, alice: str, engine: sa.Engine, settings: Settings
) -> None:
    set_quota(cloud, "alice", security_groups=1)
    assert post(cloud, alice, "security_groups", {"name": "web"}).status_code == 201
    before = state_of(engine, settings)
    refused(
        post(cloud, alice, "security_groups", {"name": "db"}),
        "1 security group allowed, 1 in use, 1 asked",
    )
    assert state_of(engine, settings) == before
    listed = cloud.client.get("/api/v1/security_groups", headers=bearer(alice)).json()
    assert sorted(g["name"] for g in listed["items"]) == ["default", "web"]


def test_key_pairs_imported_or_generated(
    cloud: Cloud, alice: str, engine: sa.Engine, settings: Settings
) -> None:
    set_quota(cloud, "alice", key_pairs=1)
    first = post(cloud, alice, "ssh_key_pairs", {"name": "a", "public_key": ED25519})
    assert first.status_code == 201, first.text
    before = state_of(engine, settings)
    detail = "1 key pair allowed, 1 in use, 1 asked"
    refused(post(cloud, alice, "ssh_key_pairs", {"name": "b", "public_key": ED25519}), detail)
    refused(post(cloud, alice, "ssh_key_pairs/generate", {"name": "c"}), detail)
    assert state_of(engine, settings) == before
    assert delete(cloud, alice, f"ssh_key_pairs/{first.json()['id']}") == 204
    assert post(cloud, alice, "ssh_key_pairs/generate", {"name": "c"}).status_code == 201


def test_defaults_come_from_settings_and_minus_one_is_unlimited(
    cloud: Cloud, alice: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "quota_key_pairs", 0)

    def generate(name: str) -> Response:
        return post(cloud, alice, "ssh_key_pairs/generate", {"name": name})

    refused(generate("a"), "0 key pairs allowed, 0 in use, 1 asked")
    set_quota(cloud, "alice", key_pairs=-1)
    assert [generate(name).status_code for name in "abc"] == [201, 201, 201]
    set_quota(cloud, "alice", key_pairs=None)  # back to the default: 0, with 3 in use
    refused(generate("d"), "0 key pairs allowed, 3 in use, 1 asked")


def test_admins_have_quotas_and_the_system_account_has_none(
    cloud: Cloud,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    make_disk: Callable[..., Path],
) -> None:
    monkeypatch.setattr(settings, "quota_security_groups", 0)
    refused(
        post(cloud, cloud.admin, "security_groups", {"name": "g"}),
        "0 security groups allowed, 0 in use, 1 asked",
    )
    # The owner's quota counts, whoever asks: an admin creating for a-shpoolxx is not held.
    monkeypatch.setattr(settings, "quota_images", 0)
    disk = make_disk("shared.qcow2", "qcow2", "64M").read_bytes()
    image = upload(cloud, cloud.admin, disk, account_id="a-shpoolxx")
    assert image.status_code == 201, image.text


# --- races ---------------------------------------------------------------------------------


def race(count: int, ask: Callable[[int], Response]) -> list[Response]:
    """`count` requests at once (threads released together), their answers."""
    start = threading.Barrier(count)
    answers: list[Response] = []

    def run(n: int) -> None:
        start.wait()
        answers.append(ask(n))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


RACERS: dict[str, tuple[str, Callable[[Cloud, int], dict[str, Any]]]] = {
    "launch": ("instances", lambda cloud, n: {"image_id": cloud.image_id, "instance_type": "nano"}),
    "volume": ("volumes", lambda cloud, n: {"size_gib": 1}),
    "key pair": ("ssh_key_pairs/generate", lambda cloud, n: {"name": f"k{n}"}),
    "security group": ("security_groups", lambda cloud, n: {"name": f"g{n}"}),
}


@pytest.mark.parametrize("kind", RACERS)
def test_concurrent_requests_never_pass_the_last_slot(
    cloud: Cloud, alice: str, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Six requests at once for one slot left: one wins. Launches also hold vdc's in-process
    placement lock; it is taken away here, as two API replicas would not share it, so the
    account's lock alone must hold."""
    monkeypatch.setattr("app.services.compute.instances.PLACEMENT_LOCK", contextlib.nullcontext())
    # One slot left of each: an instance of 2, a 1 GiB volume in 2 GiB less a 64 MiB root
    # disk, a key pair, a security group.
    set_quota(cloud, "alice", instances=2, volume_gib=2, key_pairs=1, security_groups=1)
    assert launch(cloud, alice).status_code == 202
    path, body = RACERS[kind]
    answers = race(6, lambda n: post(cloud, alice, path, body(cloud, n)))
    for answer in answers:
        assert answer.status_code < 300 or answer.json()["type"] == "quota_exceeded", answer.text
    assert sorted(a.status_code // 100 for a in answers) == [2, 4, 4, 4, 4, 4]


def test_an_upload_over_the_image_quota_is_refused_before_its_body_is_read(
    cloud: Cloud,
    alice: str,
    settings: Settings,
    make_disk: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Content-Length says 2 GiB, over the 1 GiB quota: refused from the header alone.
    (Had the small body been read, the check once it is stored would have let it in.)"""
    monkeypatch.setattr(settings, "max_image_size", 4 * 1024**3)
    set_quota(cloud, "alice", image_gib=1)
    response = cloud.client.post(
        "/api/v1/images",
        params={"arch": "x86_64"},
        content=make_disk("small.qcow2", "qcow2", "64M").read_bytes(),
        headers={**bearer(alice), **OCTET, "Content-Length": str(2 * 1024**3)},
    )
    refused(response, "1 GiB of images allowed, 0 in use, 2 asked")

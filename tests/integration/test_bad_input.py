"""Bad input gets a 4xx with a reason and changes nothing: huge bodies, wrong content types,
odd bytes in names, hostnames and user-data, and conflicting actions racing on one
instance (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Keys, bearer
from tests.integration.cloud import Cloud, build_cloud


@pytest.fixture
def cloud(client: TestClient, keys: Keys, test_host_uri, make_disk: Callable[..., Path]) -> Cloud:  # type: ignore[no-untyped-def]
    return build_cloud(client, keys, test_host_uri(), make_disk)


def count_instances(cloud: Cloud) -> int:
    listed = cloud.client.get("/api/v1/instances", headers=bearer(cloud.admin)).json()
    return int(listed["total"])


def test_huge_bodies_are_refused_before_they_are_read(cloud: Cloud) -> None:
    huge = b'{"image_id": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    headers = {**bearer(cloud.admin), "Content-Type": "application/json"}
    declared = cloud.client.post("/api/v1/instances", content=huge, headers=headers)
    assert declared.status_code == 413, declared.text
    assert declared.json()["type"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"image_id": "'
        for _ in range(64):
            yield b"y" * 65536
        yield b'"}'

    streamed = cloud.client.post("/api/v1/instances", content=chunks(), headers=headers)
    assert streamed.status_code == 413
    assert count_instances(cloud) == 0


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("text/plain", b'{"image_id": "wmi-x"}', 422),
        ("application/x-www-form-urlencoded", b"image_id=wmi-x", 422),
        ("application/json", b"\xff\xfe not utf-8", 422),
        ("application/json", b'{"image_id": ', 422),
        ("application/json", b"[]", 422),
    ],
)
def test_wrong_content_types_and_broken_json(
    cloud: Cloud, content_type: str, body: bytes, status: int
) -> None:
    response = cloud.client.post(
        "/api/v1/instances",
        content=body,
        headers={**bearer(cloud.admin), "Content-Type": content_type},
    )
    assert response.status_code == status, response.text
    assert set(response.json()) == {"type", "detail"}
    assert count_instances(cloud) == 0
    image = cloud.client.post(
        "/api/v1/images?arch=x86_64",
        json={"file": "not an image"},
        headers=bearer(cloud.admin),
    )
    assert image.status_code == 415


@pytest.mark.parametrize(
    "body",
    [
        {"hostname": "web\x00one"},
        {"hostname": "wéb"},
        {"hostname": "-web"},
        {"hostname": "a" * 64},
        {"hostname": "web;rm -rf /"},
        {"display_name": "nul\x00inside"},
        {"user_data_base64": "!!not base64!!"},
        {"user_data": "é" * 9000},  # 18 000 bytes in UTF-8: over 16 KiB
    ],
)
def test_odd_bytes_in_names_hostnames_and_user_data(cloud: Cloud, body: dict[str, str]) -> None:
    response = cloud.client.post(
        "/api/v1/instances",
        json={"image_id": cloud.image_id, "instance_type": "nano", **body},
        headers=bearer(cloud.admin),
    )
    assert response.status_code == 422, response.text
    assert count_instances(cloud) == 0


def test_binary_user_data_is_kept_byte_for_byte(cloud: Cloud) -> None:
    raw = bytes(range(256)) * 8  # every byte value, NUL included
    launched = cloud.launch(user_data_base64=base64.b64encode(raw).decode())
    assert launched["user_data_size"] == len(raw)


def test_nul_characters_are_refused_everywhere(cloud: Cloud) -> None:
    """PostgreSQL cannot store them; binary user-data goes base64-encoded instead."""
    for path, body in (
        ("/api/v1/instances", {"image_id": cloud.image_id, "user_data": "a\x00b"}),
        ("/api/v1/security_groups", {"name": "web", "description": "a\x00b"}),
        ("/api/v1/volumes", {"size_mib": 8, "display_name": "a\x00b"}),
        ("/api/v1/ssh_key_pairs/generate", {"name": "a\x00b"}),
    ):
        response = cloud.client.post(path, json=body, headers=bearer(cloud.admin))
        assert response.status_code == 422, (path, response.text)
        assert "NUL" in response.json()["detail"]
    for path in ("/api/v1/instances/i-%00", "/api/v1/instances?image_id=wmi-%00"):
        response = cloud.client.get(path, headers=bearer(cloud.admin))
        assert response.status_code == 422, (path, response.text)
    form = cloud.client.post("/login", data={"api_key": "vdc_\x00"})
    assert form.status_code == 422
    assert count_instances(cloud) == 0


def test_conflicting_actions_racing_on_one_instance(cloud: Cloud) -> None:
    instance = cloud.wait_for(cloud.launch()["id"], "running")
    actions = ["stop", "reboot", "poweroff", "start", "stop", "reboot"] * 2
    answers: list[int] = []
    gate = threading.Barrier(len(actions) + 1)

    def act(name: str) -> None:
        gate.wait()
        answers.append(cloud.action(instance["id"], name).status_code)

    def terminate() -> None:
        gate.wait()
        response = cloud.client.delete(
            f"/api/v1/instances/{instance['id']}", headers=bearer(cloud.admin)
        )
        answers.append(response.status_code)

    threads = [threading.Thread(target=act, args=(a,)) for a in actions]
    threads.append(threading.Thread(target=terminate))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(answers) <= {202, 409}, answers
    assert 202 in answers
    final = cloud.wait_for(instance["id"], "terminated", timeout=30)
    assert final["state_reason"] == ""
    assert count_instances(cloud) == 1

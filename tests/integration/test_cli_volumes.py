"""`vdc-manage volume ...` as an operator runs it (real processes) while the server's worker,
started by the API client fixture on the same database, does the host side."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from tests.conftest import Keys
from tests.integration.cloud import Cloud, build_cloud
from tests.integration.test_cli_keypairs import refused, run


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    """The CLI is the same code on both engines; the API suite covers PostgreSQL."""
    return sqlite_url


@pytest.fixture
def cloud(client: TestClient, keys: Keys, test_host_uri, make_disk: Callable[..., Path]) -> Cloud:  # type: ignore[no-untyped-def]
    return build_cloud(client, keys, test_host_uri(), make_disk)


def volume(*args: str, settings: Settings, check: bool = True):  # type: ignore[no-untyped-def]
    return run(*args, settings=settings, check=check, group="volume")


def test_create_attach_detach_delete(cloud: Cloud, settings: Settings) -> None:
    alice = cloud.keys.new("alice")
    instance = cloud.launch(alice)
    cloud.wait_for(instance["id"], "running", key=alice)
    account = cloud.keys.ids["alice"]

    made = volume(
        "create",
        "--account-id",
        "alice",
        "--size",
        "64M",
        "--instance-id",
        instance["id"],
        "--name",
        "data",
        "--wait",
        settings=settings,
    ).stdout.split()
    volume_id = made[0]
    assert volume_id.startswith("vol-") and made[1] == "available"

    attached = volume("attach", volume_id, instance["id"], "--wait", settings=settings)
    assert attached.stdout.split() == [volume_id, "attached"]
    listed = volume("list", "--account-id", account, settings=settings).stdout
    rows = [line.split() for line in listed.splitlines()[1:]]
    by_device = {row[6]: (row[0], row[2], row[3]) for row in rows}
    assert by_device["vdb"] == (volume_id, "attached", "64")
    assert by_device["vda"][1] == "attached"  # the root disk, a boot volume
    shown = volume("show", volume_id, settings=settings).stdout
    assert "display_name" in shown and "data" in shown and instance["id"] in shown

    again = volume("attach", volume_id, instance["id"], settings=settings, check=False)
    refused(again, f"volume {volume_id} is attached to instance {instance['id']}")
    in_use = volume("del", volume_id, settings=settings, check=False)
    refused(in_use, "detach it first")

    assert volume("detach", volume_id, "--wait", settings=settings).stdout.split() == [
        volume_id,
        "available",
    ]
    volume("update", volume_id, "--name", "old", settings=settings)
    assert volume("del", volume_id, "--wait", settings=settings).stdout.split() == [
        volume_id,
        "deleted",
    ]


def test_refusals_are_one_clear_line(cloud: Cloud, settings: Settings) -> None:
    for args, words in (
        (("create", "--account-id", "a-shpoolxx", "--size", "64"), "give a number with M or G"),
        (("create", "--account-id", "a-shpoolxx"), "give size_mib or size_gib"),
        (("create", "--account-id", "nobody", "--size", "1G"), "account nobody not found"),
        (("create", "--account-id", "a-shpoolxx", "--size", "9999G"), "limited to 2048 GiB"),
        (("attach", "vol-nothere", "i-nothere"), "volume vol-nothere not found"),
        (("attach", "vol-nothere", "i-x", "--device", "sdb"), "device"),
        (("detach", "vol-nothere"), "volume vol-nothere not found"),
    ):
        refused(volume(*args, settings=settings, check=False), words)

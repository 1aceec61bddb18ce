"""`vdc-manage image add local` of an ISO, `vdc-manage instance eject` and `vdc-manage
instance image` as an operator runs them (real processes), while the server's worker,
started by the API client fixture on the same database, does the host side."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from tests.conftest import Keys
from tests.integration.cloud import Cloud, build_cloud
from tests.integration.test_capture import captured_disk, downloads  # noqa: F401 - fixtures
from tests.integration.test_cli import run
from tests.integration.test_cli_keypairs import refused


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    """The CLI is the same code on both engines; the API suite covers PostgreSQL."""
    return sqlite_url


@pytest.fixture
def cloud(client: TestClient, keys: Keys, test_host_uri, make_disk: Callable[..., Path]) -> Cloud:  # type: ignore[no-untyped-def]
    return build_cloud(client, keys, test_host_uri(), make_disk)


def manage(*args: str, settings: Settings, check: bool = True):  # type: ignore[no-untyped-def]
    return run(settings, "vdc-manage", *args, check=check)


def test_an_iso_added_local_is_kind_iso(
    cloud: Cloud, settings: Settings, make_iso: Callable[[str], Path]
) -> None:
    path = make_iso("debian.iso")
    image_id = manage(
        "image", "add", "local", str(path), "--arch", "x86_64",
        "--account-id", "a-shpoolxx", "--description", "Debian 12 netinst",
        settings=settings,
    ).stdout.strip().splitlines()[-1]  # fmt: skip
    assert image_id.startswith("wmi-")
    shown = json.loads(manage("image", "show", image_id, "--json", settings=settings).stdout)
    assert (shown["kind"], shown["format"], shown["state"]) == ("iso", "raw", "available")
    listed = manage("image", "list", settings=settings).stdout.splitlines()
    header, row = listed[0].split(), next(line.split() for line in listed if image_id in line)
    assert row[header.index("KIND")] == "iso" and row[header.index("STATE")] == "available"
    converted = manage(
        "image", "add", "local", str(path), "--arch", "x86_64", "--convert", "qcow2",
        settings=settings, check=False,
    )  # fmt: skip
    refused(converted, "register it without conversion")


@pytest.mark.usefixtures("downloads")  # the test driver sends no volume's bytes
def test_eject_and_image_of_an_instance(
    cloud: Cloud, settings: Settings, make_iso: Callable[[str], Path]
) -> None:
    iso = manage(
        "image", "add", "local", str(make_iso("installer.iso")), "--arch", "x86_64",
        settings=settings,
    ).stdout.strip().splitlines()[-1]  # fmt: skip
    instance = cloud.launch(image_id=iso, root_disk_size=1)
    cloud.wait_for(instance["id"], "running")

    refused(manage("instance", "image", instance["id"], settings=settings, check=False), "stop it")
    assert manage("instance", "eject", instance["id"], settings=settings).stdout.strip() == (
        f"{instance['id']}: CD ejected"
    )
    refused(
        manage("instance", "eject", instance["id"], settings=settings, check=False),
        "ejected already",
    )
    assert cloud.show(instance["id"])["cdrom_image_id"] is None

    assert cloud.action(instance["id"], "stop").status_code == 202
    cloud.wait_for(instance["id"], "stopped")
    made = manage(
        "instance", "image", instance["id"], "--display-name", "installed",
        "--description", "from the installer", "--wait", settings=settings,
    )  # fmt: skip
    image_id, state = made.stdout.split()
    assert state == "available" and image_id.startswith("wmi-")
    assert "% " in made.stderr  # the steps, as they went by
    shown = json.loads(manage("image", "show", image_id, "--json", settings=settings).stdout)
    owner = cloud.show(instance["id"])["account_id"]  # the instance's account owns it
    assert (shown["display_name"], shown["account_id"], shown["kind"]) == (
        "installed",
        owner,
        "disk",
    )


def test_refusals_are_one_clear_line(cloud: Cloud, settings: Settings) -> None:
    for args, words in (
        (("instance", "eject", "i-nothere"), "instance i-nothere not found"),
        (("instance", "image", "i-nothere"), "instance i-nothere not found"),
    ):
        refused(manage(*args, settings=settings, check=False), words)

"""vdc-init with Wakame-vdc's metadata drive: a real drive image, built by vdc's own builder
from a metadata tree, "mounted" by a stand-in `mount` that copies the image's files out
with mtools (the real mount is the e2e test's: tests/e2e/test_metadata_drive_e2e.py).

The guest runs vdc-init under dash: busybox sh would run its own mount and findfs applets
whatever PATH says. The fake metadata service is there too, to show the drive case never
asks it (and the fallback cases do)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.services.compute.fat_image import build_fat_image
from metadata.drive import drive_files
from metadata.tree import build
from tests.unit.metadata.test_tree import FACTS
from tests.unit.test_vdc_init import (
    DASH,
    USER_DATA,
    Guest,
    Metadata,
    log_lines,
    make_guest,
    serve_metadata,
)

KEY = "ssh-ed25519 AAAAC3Nza laptop"  # FACTS' key
DRIVE_TOOLS = ("findfs", "mount", "umount")


@pytest.fixture
def metadata() -> Iterator[tuple[Metadata, str]]:
    with serve_metadata() as served:
        yield served


@pytest.fixture(scope="module")
def drive_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    image = tmp_path_factory.mktemp("drive") / "metadata.img"
    facts = dataclasses.replace(FACTS, user_data=USER_DATA)
    build_fat_image(image, drive_files(build(facts)), "METADATA", 10 * 1024**2, "0badcafe")
    return image


def fake(guest: Guest, name: str, body: str) -> None:
    tool = guest.bin / name
    tool.write_text(f'#!/bin/sh\necho "{name} $*" >>"{guest.root.parent}/tools.log"\n{body}\n')
    tool.chmod(0o755)


def with_drive(guest: Guest, image: Path, findfs: bool = True, mounts: bool = True) -> None:
    """Drive tools on the guest's PATH: findfs finds /dev/vdb1, mount copies the image's
    files into the folder (or fails as a kernel without vfat would), umount empties it."""
    if findfs:
        fake(guest, "findfs", '[ "$1" = LABEL=METADATA ] && echo /dev/vdb1')
    if mounts:
        copy = f"MTOOLS_SKIP_CHECK=1 /usr/bin/mcopy -s -n -i '{image}@@1048576' '::/*' \"$6\"/"
        fake(guest, "mount", f'[ "$1 $2 $3 $4" = "-t vfat -o ro" ] || exit 1\n{copy}')
    else:
        fake(guest, "mount", 'echo "mount: $6: unknown filesystem type vfat." >&2; exit 32')
    fake(guest, "umount", '/usr/bin/find "$1" -mindepth 1 -delete')


def tools_log(guest: Guest) -> list[str]:
    log = guest.root.parent / "tools.log"
    return log.read_text().splitlines() if log.exists() else []


def drive_guest(tmp_path: Path, url: str, image: Path, **tools: bool) -> Guest:
    guest = make_guest(tmp_path, url, without=DRIVE_TOOLS)
    with_drive(guest, image, **tools)
    return guest


def test_everything_comes_from_the_drive_and_nothing_from_the_network(
    tmp_path: Path, metadata: tuple[Metadata, str], drive_image: Path
) -> None:
    service, url = metadata
    guest = drive_guest(tmp_path, url, drive_image)
    result = guest.run(shell=DASH)
    assert result.returncode == 0, result.stdout + result.stderr
    assert service.requests == []

    mountpoint = guest.root / "var/lib/vdc-init/drive"
    assert tools_log(guest) == [
        "findfs LABEL=METADATA",
        f"mount -t vfat -o ro /dev/vdb1 {mountpoint}",
        f"umount {mountpoint}",
    ]
    assert list(mountpoint.iterdir()) == []  # unmounted at the end
    assert guest.hostnames == ["web1"]
    assert (
        (guest.root / "etc/hosts").read_text().endswith("10.0.0.5 web1.vdc.lan web1 # vdc-init\n")
    )
    assert (guest.root / "root/.ssh/authorized_keys").read_text() == KEY + "\n"
    assert (guest.root / "user-data-proof").read_text() == f"ran-as-{os.getuid()}\n"
    logged = log_lines(result)
    assert logged[0] == (
        "vdc-init: reading the metadata drive /dev/vdb1 (LABEL=METADATA) at /var/lib/vdc-init/drive"
    )
    assert "vdc-init: instance i-abcd1234 (metadata drive /dev/vdb1)" in logged
    assert "vdc-init: public keys for root: 1 added to /root/.ssh/authorized_keys" in logged
    assert logged[-1] == "vdc-init: done"

    again = guest.run(shell=DASH)  # the next boot reads it again; the one-time work is done
    assert "vdc-init: one-time set-up of i-abcd1234 already done" in log_lines(again)
    assert service.requests == []


def test_a_drive_mounted_already_is_read_where_it_is(
    tmp_path: Path, metadata: tuple[Metadata, str], drive_image: Path
) -> None:
    _, url = metadata
    guest = drive_guest(tmp_path, url, drive_image)
    # As wakame-init leaves it: mounted on /metadata (an fstab line, say).
    where = tmp_path / "metadata"
    where.mkdir()
    subprocess.run(
        ["mcopy", "-s", "-n", "-i", f"{drive_image}@@1048576", "::/*", str(where)],
        check=True,
        env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
    )
    (guest.root / "proc").mkdir()
    (guest.root / "proc/mounts").write_text(
        f"proc /proc proc rw 0 0\n/dev/vdb1 {where} vfat ro,relatime 0 0\n"
    )
    result = guest.run(shell=DASH)
    assert result.returncode == 0, result.stdout + result.stderr
    assert tools_log(guest) == ["findfs LABEL=METADATA"]  # neither mounted nor unmounted
    assert f"metadata drive /dev/vdb1 (LABEL=METADATA) at {where}" in result.stdout
    assert (guest.root / "root/.ssh/authorized_keys").read_text() == KEY + "\n"
    assert (where / "meta-data/instance-id").read_text() == "i-abcd1234"


def test_udevs_by_label_link_is_enough(
    tmp_path: Path, metadata: tuple[Metadata, str], drive_image: Path
) -> None:
    service, url = metadata
    guest = drive_guest(tmp_path, url, drive_image, findfs=False)
    (guest.root / "dev/disk/by-label").mkdir(parents=True)
    (guest.root / "dev/vdb1").touch()
    (guest.root / "dev/disk/by-label/METADATA").symlink_to("../../vdb1")
    result = guest.run(shell=DASH)
    assert result.returncode == 0, result.stdout + result.stderr
    device = guest.root / "dev/vdb1"
    assert tools_log(guest)[0].startswith(f"mount -t vfat -o ro {device} ")
    assert guest.hostnames == ["web1"] and service.requests == []


def test_without_a_drive_the_service_is_asked(
    tmp_path: Path, metadata: tuple[Metadata, str]
) -> None:
    service, url = metadata
    guest = make_guest(tmp_path, url, without=DRIVE_TOOLS)
    fake(guest, "findfs", "exit 1")  # no device labelled METADATA
    result = guest.run(shell=DASH)
    assert result.returncode == 0, result.stdout + result.stderr
    assert log_lines(result)[0] == "vdc-init: using wget"
    assert "instance i-first001 (metadata at http://127.0.0.1" in result.stdout
    assert service.requests and guest.hostnames == ["web-1"]


def test_a_drive_that_does_not_mount_falls_back_to_the_service(
    tmp_path: Path, metadata: tuple[Metadata, str], drive_image: Path
) -> None:
    service, url = metadata
    guest = drive_guest(tmp_path, url, drive_image, mounts=False)
    result = guest.run(shell=DASH)
    assert result.returncode == 0, result.stdout + result.stderr
    logged = log_lines(result)
    assert logged[0].startswith("vdc-init: could not mount the metadata drive /dev/vdb1: mount:")
    assert logged[1] == "vdc-init: using wget"
    assert service.requests and guest.hostnames == ["web-1"]
    assert not [line for line in tools_log(guest) if line.startswith("umount")]


@pytest.mark.parametrize(
    ("source", "has_drive", "rc", "expected"),
    [
        ("network", True, 0, "vdc-init: using wget"),
        ("drive", False, 1, "vdc-init: no metadata drive (LABEL=METADATA) to read: nothing done"),
        ("cdrom", True, 1, "vdc-init: VDC_INIT_SOURCE=cdrom: expected auto, drive or network"),
    ],
)
def test_the_source_setting(
    tmp_path: Path,
    metadata: tuple[Metadata, str],
    drive_image: Path,
    source: str,
    has_drive: bool,
    rc: int,
    expected: str,
) -> None:
    service, url = metadata
    guest = drive_guest(tmp_path, url, drive_image, findfs=has_drive)
    (guest.root / "etc/default").mkdir()
    (guest.root / "etc/default/vdc-init").write_text(f"VDC_INIT_SOURCE={source}\n")
    result = guest.run(shell=DASH)
    assert result.returncode == rc, result.stdout + result.stderr
    assert log_lines(result)[0] == expected
    assert not [line for line in tools_log(guest) if line.startswith("mount")]
    assert bool(service.requests) == (source == "network")

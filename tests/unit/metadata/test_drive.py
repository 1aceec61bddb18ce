"""The metadata drive's files: one per leaf of the tree, named as vfat allows, each holding
what the service answers at that path."""

from __future__ import annotations

import dataclasses

import pytest

from metadata.drive import drive_files, drive_path
from metadata.tree import build, render
from tests.unit.metadata.test_tree import FACTS, TREE

MAC_FOLDER = "meta-data/network/interfaces/macs/52-54-00-aa-bb-cc"


def test_every_leaf_is_a_file_with_the_services_answer() -> None:
    files = drive_files(TREE)
    assert files["meta-data/instance-id"] == b"i-abcd1234"
    assert files["meta-data/wmi-id"] == files["meta-data/ami-id"] == b"wmi-lucid000"
    assert files["meta-data/local-hostname"] == b"web1.vdc.lan"
    assert files["meta-data/mac"] == b"52:54:00:aa:bb:cc"  # the value keeps its colons
    assert files["meta-data/public-keys/0/openssh-key"] == b"ssh-ed25519 AAAAC3Nza laptop\n"
    assert files["meta-data/placement/availability-zone"] == b"vdc-1a"
    assert files["user-data"] == b"#!/bin/sh\necho \xff\n"  # raw bytes, at the root
    for key, value in {
        "mac": b"52:54:00:aa:bb:cc",
        "local-ipv4s": b"10.0.0.5",
        "x-gateway": b"10.0.0.1",
        "x-netmask": b"255.255.255.0",
        "x-network": b"10.0.0.0",
        "x-broadcast": b"10.0.0.255",
        "x-metric": b"100",
        "x-dns": b"10.0.0.1",
    }.items():
        assert files[f"{MAC_FOLDER}/{key}"] == value, key
    # Nothing else is on it: no identity document, no listings, no colon anywhere.
    assert not [name for name in files if not name.startswith(("meta-data/", "user-data"))]
    assert not [name for name in files if ":" in name or "=" in name]
    for name, body in files.items():
        path = name.replace("52-54-00-aa-bb-cc", "52:54:00:aa:bb:cc")
        assert render(TREE, path).body == body, name


def test_no_user_data_means_no_file() -> None:
    files = drive_files(build(dataclasses.replace(FACTS, user_data=None)))
    assert "user-data" not in files and "meta-data/instance-id" in files


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("meta-data/public-keys/0=laptop/openssh-key", "meta-data/public-keys/0/openssh-key"),
        ("meta-data/network/interfaces/macs/52:54:00:01:02:03/mac",
         "meta-data/network/interfaces/macs/52-54-00-01-02-03/mac"),
    ],
)  # fmt: skip
def test_drive_path_names(path: str, expected: str) -> None:
    assert drive_path(path) == expected


@pytest.mark.parametrize("path", ["meta-data/a*b", "meta-data/..", "meta-data//x", 'a"b'])
def test_names_a_fat_drive_cannot_hold_are_refused(path: str) -> None:
    with pytest.raises(ValueError, match="cannot be a path on a FAT drive"):
        drive_path(path)

"""The metadata tree, path by path: listings, leaves, 404s, and what real clients need."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from metadata.tree import InstanceFacts, Interface, build, render

FACTS = InstanceFacts(
    instance_id="i-abcd1234",
    account_id="a-alice000",
    image_id="wmi-lucid000",
    instance_type="small",
    hostname="web1",
    domain="vdc.lan",
    architecture="x86_64",
    region="vdc-1",
    launched_at=datetime(2026, 11, 26, 4, 0, tzinfo=UTC),
    interfaces=(
        Interface(
            "52:54:00:aa:bb:cc",
            "10.0.0.5",
            0,
            "vif-1",
            "nw-1",
            "10.0.0.0/24",
            "10.0.0.1",
            ("10.0.0.1",),
        ),
    ),
    public_keys=(("laptop", "ssh-ed25519 AAAAC3Nza laptop"),),
    user_data=b"#!/bin/sh\necho \xff\n",
)
TREE = build(FACTS)


def body(path: str) -> str:
    answer = render(TREE, path)
    assert answer.status == 200, path
    return answer.body.decode(errors="replace")


def test_version_root_lists_subtrees_and_user_data() -> None:
    assert body("") == "meta-data/\ndynamic/\nuser-data"


def test_meta_data_listing_has_ec2_and_wakame_keys() -> None:
    names = body("meta-data/").splitlines()
    for key in (
        "ami-id", "wmi-id", "ami-launch-index", "ami-manifest-path", "block-device-mapping/",
        "hostname", "instance-id", "instance-type", "local-hostname", "local-ipv4", "mac",
        "network/", "placement/", "public-hostname", "public-keys/", "reservation-id",
        "security-groups", "services/", "x-gateway", "x-netmask", "x-dns",
    ):  # fmt: skip
        assert key in names, key
    assert "public-ipv4" not in names  # no public address: no key (as EC2)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("meta-data/instance-id", "i-abcd1234"),
        ("meta-data/ami-id", "wmi-lucid000"),
        ("meta-data/wmi-id", "wmi-lucid000"),
        ("meta-data/local-ipv4", "10.0.0.5"),
        ("meta-data/mac", "52:54:00:aa:bb:cc"),
        ("meta-data/local-hostname", "web1.vdc.lan"),
        ("meta-data/placement/availability-zone", "vdc-1a"),
        ("meta-data/placement/region", "vdc-1"),
        ("meta-data/x-gateway", "10.0.0.1"),
        ("meta-data/x-netmask", "255.255.255.0"),
        ("meta-data/x-dns", "10.0.0.1"),
        ("meta-data/reservation-id", "r-abcd1234"),
        ("meta-data/block-device-mapping/root", "/dev/vda"),
        ("meta-data/public-keys/", "0=laptop"),
        ("meta-data/public-keys/0/", "openssh-key"),
        ("meta-data/public-keys/0/openssh-key", "ssh-ed25519 AAAAC3Nza laptop\n"),
        ("meta-data/network/interfaces/macs/52:54:00:aa:bb:cc/local-ipv4s", "10.0.0.5"),
        (
            "meta-data/network/interfaces/macs/52:54:00:aa:bb:cc/subnet-ipv4-cidr-block",
            "10.0.0.0/24",
        ),
        ("meta-data/network/interfaces/macs/52:54:00:aa:bb:cc/device-number", "0"),
        # Wakame-vdc's keys per interface, what wakame-init configures the interface from.
        ("meta-data/network/interfaces/macs/52:54:00:aa:bb:cc/x-gateway", "10.0.0.1"),
        ("meta-data/network/interfaces/macs/52:54:00:aa:bb:cc/x-netmask", "255.255.255.0"),
        ("meta-data/network/interfaces/macs/52:54:00:aa:bb:cc/x-network", "10.0.0.0"),
        ("meta-data/network/interfaces/macs/52:54:00:aa:bb:cc/x-broadcast", "10.0.0.255"),
        ("meta-data/network/interfaces/macs/52:54:00:aa:bb:cc/x-metric", "100"),
        ("meta-data/network/interfaces/macs/52:54:00:aa:bb:cc/x-dns", "10.0.0.1"),
    ],
)
def test_leaves(path: str, expected: str) -> None:
    assert body(path) == expected


def test_trailing_slash_on_a_leaf_and_none_on_a_directory_both_answer() -> None:
    assert body("meta-data/instance-id/") == "i-abcd1234"
    assert body("meta-data/placement") == "availability-zone\nregion"


def test_user_data_is_the_raw_bytes() -> None:
    answer = render(TREE, "user-data")
    assert answer.body == b"#!/bin/sh\necho \xff\n"


def test_identity_document() -> None:
    answer = render(TREE, "dynamic/instance-identity/document")
    document = json.loads(answer.body)
    assert answer.content_type == "application/json"
    assert document["instanceId"] == "i-abcd1234"
    assert document["imageId"] == "wmi-lucid000"
    assert document["privateIp"] == "10.0.0.5"
    assert document["availabilityZone"] == "vdc-1a" and document["region"] == "vdc-1"
    assert document["pendingTime"] == "2026-11-26T04:00:00Z"
    assert document["accountId"] == "a-alice000"


@pytest.mark.parametrize(
    "path",
    [
        "meta-data/nothing",
        "meta-data/instance-id/more",
        "../etc/passwd",
        "meta-data/public-keys/7",
        "user-data/x",
    ],
)
def test_unknown_paths_are_404(path: str) -> None:
    assert render(TREE, path).status == 404


def test_no_user_data_no_key() -> None:
    bare = build(InstanceFacts(**{**FACTS.__dict__, "user_data": None, "public_keys": ()}))
    assert render(bare, "user-data").status == 404
    assert render(bare, "").body == b"meta-data/\ndynamic/"
    assert render(bare, "meta-data/public-keys/").status == 404

"""The EC2 metadata tree as plain data, and one pure function that answers any path.

Nova's pattern: gather everything about the instance once (metadata/facts.py), build a
nested dict here, then `render` walks it. A dict is a directory (listed one name per line,
subdirectories with a trailing `/`), anything else is a leaf.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from datetime import datetime

# Every version the EC2 service lists; vdc answers all of them like `latest`.
VERSIONS = (
    "1.0", "2007-01-19", "2007-03-01", "2007-08-29", "2007-10-10", "2007-12-15",
    "2008-02-01", "2008-09-01", "2009-04-04", "2011-01-01", "2011-05-01", "2012-01-12",
    "2014-02-25", "2014-11-05", "2015-10-20", "2016-04-19", "2016-06-30", "2016-09-02",
    "2018-03-28", "2018-08-17", "2018-09-24", "2019-10-01", "2020-10-27", "2021-01-03",
    "2021-03-23", "2021-07-15", "2022-09-24", "2023-10-10", "2024-04-11",
)  # fmt: skip

Tree = dict[str, "Tree | str | bytes"]


@dataclass(frozen=True)
class Interface:
    mac: str
    ip: str
    device_number: int
    interface_id: str
    network_id: str
    cidr: str
    gateway: str
    dns_servers: tuple[str, ...]


@dataclass(frozen=True)
class InstanceFacts:
    """Everything the tree shows about one instance, read once per request."""

    instance_id: str
    account_id: str
    image_id: str
    instance_type: str
    hostname: str
    domain: str
    architecture: str
    region: str
    launched_at: datetime
    interfaces: tuple[Interface, ...]
    security_groups: tuple[str, ...] = ("default",)
    public_keys: tuple[tuple[str, str], ...] = ()  # (name, openssh line)
    user_data: bytes | None = None
    block_devices: tuple[tuple[str, str], ...] = ()  # (name, device) beyond ami/root
    public_ipv4: str | None = None

    @property
    def availability_zone(self) -> str:
        # Clients (botocore, cloud-init) drop the last character to get the region.
        return f"{self.region}a"


def build(facts: InstanceFacts) -> Tree:
    """The whole tree for one instance, from the version root down."""
    latest: Tree = {
        "meta-data": meta_data(facts),
        "dynamic": {"instance-identity": {"document": identity_document(facts)}},
    }
    if facts.user_data is not None:
        latest["user-data"] = facts.user_data
    return latest


def meta_data(facts: InstanceFacts) -> Tree:
    primary = facts.interfaces[0] if facts.interfaces else None
    fqdn = f"{facts.hostname}.{facts.domain}" if facts.domain else facts.hostname
    tree: Tree = {
        "ami-id": facts.image_id,
        "wmi-id": facts.image_id,  # Wakame-vdc's name for the same thing
        "ami-launch-index": "0",
        "ami-manifest-path": "(unknown)",
        "block-device-mapping": {
            "ami": "vda",
            **dict(facts.block_devices),  # ebs1, ebs2, ... as EC2 lists them
            "root": "/dev/vda",
        },
        "hostname": fqdn,
        "instance-id": facts.instance_id,
        "instance-type": facts.instance_type,
        "local-hostname": fqdn,
        "public-hostname": fqdn,
        "placement": {"availability-zone": facts.availability_zone, "region": facts.region},
        "reservation-id": "r-" + facts.instance_id.removeprefix("i-"),
        "security-groups": "\n".join(facts.security_groups),
        "services": {"domain": facts.domain or "vdc.internal", "partition": "aws"},
    }
    if primary is not None:
        network = ipaddress.IPv4Network(primary.cidr)
        tree |= {
            "local-ipv4": primary.ip,
            "mac": primary.mac,
            "network": {
                "interfaces": {
                    "macs": {i.mac: interface_tree(i, facts, fqdn) for i in facts.interfaces}
                }
            },
            "x-gateway": primary.gateway,
            "x-netmask": str(network.netmask),
            "x-dns": "\n".join(primary.dns_servers),
        }
    if facts.public_ipv4:
        tree["public-ipv4"] = facts.public_ipv4
    if facts.public_keys:
        tree["public-keys"] = {
            f"{n}={name}": {"openssh-key": key + "\n"}
            for n, (name, key) in enumerate(facts.public_keys)
        }
    return tree


def interface_tree(interface: Interface, facts: InstanceFacts, fqdn: str) -> Tree:
    network = ipaddress.IPv4Network(interface.cidr)
    return {
        "device-number": str(interface.device_number),
        "interface-id": interface.interface_id,
        "local-hostname": fqdn,
        "local-ipv4s": interface.ip,
        "mac": interface.mac,
        "owner-id": facts.account_id,
        "security-groups": "\n".join(facts.security_groups),
        "subnet-id": interface.network_id,
        "subnet-ipv4-cidr-block": interface.cidr,
        "vpc-id": interface.network_id,
        "vpc-ipv4-cidr-block": interface.cidr,
        "vpc-ipv4-cidr-blocks": interface.cidr,
        # Wakame-vdc's own keys: what wakame-init writes a static configuration from.
        "x-broadcast": str(network.broadcast_address),
        "x-dns": "\n".join(interface.dns_servers),
        "x-gateway": interface.gateway,
        # wakame-init routes through the interface of the lowest metric: the first one.
        "x-metric": str(100 + interface.device_number),
        "x-netmask": str(network.netmask),
        "x-network": str(network.network_address),
    }


def identity_document(facts: InstanceFacts) -> str:
    document = {
        "accountId": facts.account_id,
        "architecture": facts.architecture,
        "availabilityZone": facts.availability_zone,
        "imageId": facts.image_id,
        "instanceId": facts.instance_id,
        "instanceType": facts.instance_type,
        "pendingTime": facts.launched_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "privateIp": facts.interfaces[0].ip if facts.interfaces else None,
        "region": facts.region,
        "version": "2017-09-30",
    }
    return json.dumps(document, indent=2)


@dataclass
class Answer:
    status: int
    body: bytes
    content_type: str = "text/plain"
    headers: dict[str, str] = field(default_factory=dict)


NOT_FOUND = Answer(404, b"Not Found")


def render(tree: Tree, path: str) -> Answer:
    """Answers `path` (below a version: "meta-data/mac") from the tree.

    A leaf asked with a trailing slash answers as the leaf, a directory asked without one
    answers its listing: with 200 both times, since botocore does not follow redirects.
    """
    node: Tree | str | bytes = tree
    for part in [p for p in path.split("/") if p]:
        if not isinstance(node, dict):
            return NOT_FOUND
        child = node.get(part, _by_index(node, part))
        if child is None:
            return NOT_FOUND
        node = child
    if isinstance(node, dict):
        # EC2 lists key pairs as "0=name", without the slash of other subdirectories.
        listing = "\n".join(
            f"{name}/" if isinstance(child, dict) and "=" not in name else name
            for name, child in node.items()
        )
        return Answer(200, listing.encode())
    content_type = (
        "application/json"
        if path.rstrip("/").endswith("instance-identity/document")
        else "text/plain"
    )
    if isinstance(node, bytes):
        return Answer(200, node, "application/octet-stream")
    return Answer(200, node.encode(), content_type)


def version_root(tree: Tree) -> Answer:
    """`GET /latest/`: EC2 lists `dynamic`, `meta-data`, `user-data` without the trailing
    slash every directory further down has."""
    return Answer(200, "\n".join(sorted(tree)).encode())


def _by_index(directory: Tree, part: str) -> Tree | str | bytes | None:
    """public-keys/0/ is the entry listed as `0=name`."""
    if part.isdigit():
        for name, child in directory.items():
            if name.split("=", 1)[0] == part and "=" in name:
                return child
    return None

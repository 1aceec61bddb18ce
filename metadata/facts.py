"""Reading what the metadata tree shows from vdc's database (through app's models)."""

from __future__ import annotations

from sqlmodel import Session, col, select

from app.models import (
    Image,
    Instance,
    InstanceSecurityGroup,
    Network,
    NetworkInterface,
    SecurityGroup,
    SshKeyPair,
    Volume,
)
from app.models.instance import GONE_STATES
from app.models.lookups import interfaces_with_networks
from app.models.volume import VolumeState
from metadata.resolver import Lease
from metadata.tree import InstanceFacts, Interface


def lease_for(session: Session, ip: str) -> Lease | None:
    """The live instance holding `ip`, with its gateway and token option: one query, asked
    at every request (an address can pass to a new instance at any moment)."""
    row = session.exec(
        select(
            NetworkInterface.instance_id,
            Network.gateway,
            Instance.http_tokens,
            Instance.updated_at,
        )
        .join(Network, col(Network.id) == NetworkInterface.network_id)
        .join(Instance, col(Instance.id) == NetworkInterface.instance_id)
        .where(NetworkInterface.ip_address == ip)
        .where(col(Instance.state).not_in(GONE_STATES))
    ).first()
    if row is None:
        return None
    return Lease(
        instance_id=row[0],
        ip=ip,
        gateway=row[1],
        http_tokens=row[2],
        version=row[3].isoformat(),
    )


def gather(session: Session, instance_id: str, region: str) -> InstanceFacts | None:
    instance = session.get(Instance, instance_id)
    if instance is None or instance.state in GONE_STATES:
        return None
    image = session.get(Image, instance.image_id)
    rows = interfaces_with_networks(session, instance_id)
    interfaces = tuple(
        Interface(
            mac=nic.mac_address,
            ip=nic.ip_address,
            device_number=nic.device_index,
            interface_id=nic.id,
            network_id=network.id,
            cidr=network.cidr,
            gateway=network.gateway,
            dns_servers=tuple(s for s in network.dns_servers.split(",") if s),
        )
        for nic, network in rows
    )
    keys: tuple[tuple[str, str], ...] = ()
    if instance.ssh_key_id:
        key = session.get(SshKeyPair, instance.ssh_key_id)
        if key is not None:
            keys = ((key.name, key.public_key),)
    domain = rows[0][1].domain if rows else ""
    # EC2 names attached volumes ebs1, ebs2, ... with their device as the value.
    attached = session.exec(
        select(Volume.device)
        .where(Volume.instance_id == instance_id)
        .where(Volume.state == VolumeState.attached)
        .where(col(Volume.boot).is_(False))
        .order_by(col(Volume.device))
    ).all()
    block_devices = tuple((f"ebs{n}", str(device)) for n, device in enumerate(attached, 1))
    group_names = session.exec(
        select(SecurityGroup.name)
        .join(InstanceSecurityGroup, col(InstanceSecurityGroup.group_id) == SecurityGroup.id)
        .where(InstanceSecurityGroup.instance_id == instance_id)
        .order_by(col(SecurityGroup.name))
    ).all()
    return InstanceFacts(
        instance_id=instance.id,
        account_id=instance.account_id,
        image_id=instance.image_id,
        instance_type=instance.instance_type or f"c{instance.cpu_cores}m{instance.memory_size}",
        hostname=instance.hostname,
        domain=domain,
        architecture=image.arch if image else "x86_64",
        region=region,
        launched_at=instance.launched_at or instance.created_at,
        interfaces=interfaces,
        public_keys=keys,
        user_data=instance.user_data,
        block_devices=block_devices,
        security_groups=tuple(group_names),
    )

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
from app.models.lookups import interfaces_with_networks_of
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
    """The facts of one live instance (None: gone or never was)."""
    found = gather_many(session, [instance_id], region).get(instance_id)
    return found[1] if found is not None else None


def gather_many(
    session: Session, instance_ids: list[str], region: str
) -> dict[str, tuple[Instance, InstanceFacts]]:
    """Each live instance of `instance_ids` with its facts, in six queries whatever their
    number (an instance at a time was six queries each: a burst of launches, or the full
    look at thousands of instances, read that many times over)."""
    instances = list(
        session.exec(
            select(Instance)
            .where(col(Instance.id).in_(instance_ids))
            .where(col(Instance.state).not_in(GONE_STATES))
        )
    )
    if not instances:
        return {}
    ids = [instance.id for instance in instances]
    image_ids = {instance.image_id for instance in instances}
    images = {i.id: i for i in session.exec(select(Image).where(col(Image.id).in_(image_ids)))}
    interfaces = interfaces_with_networks_of(session, ids)
    key_ids = {instance.ssh_key_id for instance in instances if instance.ssh_key_id}
    keys = (
        {k.id: k for k in session.exec(select(SshKeyPair).where(col(SshKeyPair.id).in_(key_ids)))}
        if key_ids
        else {}
    )
    # EC2 names attached volumes ebs1, ebs2, ... with their device as the value.
    devices: dict[str, list[str]] = {i: [] for i in ids}
    for owner, device in session.exec(
        select(Volume.instance_id, Volume.device)
        .where(col(Volume.instance_id).in_(ids))
        .where(Volume.state == VolumeState.attached)
        .where(col(Volume.boot).is_(False))
        .order_by(col(Volume.device))
    ):
        devices[str(owner)].append(str(device))
    groups: dict[str, list[str]] = {i: [] for i in ids}
    for member, name in session.exec(
        select(InstanceSecurityGroup.instance_id, SecurityGroup.name)
        .join(SecurityGroup, col(InstanceSecurityGroup.group_id) == SecurityGroup.id)
        .where(col(InstanceSecurityGroup.instance_id).in_(ids))
        .order_by(col(SecurityGroup.name))
    ):
        groups[member].append(name)
    return {
        instance.id: (
            instance,
            _facts(
                instance,
                images.get(instance.image_id),
                interfaces[instance.id],
                keys.get(instance.ssh_key_id) if instance.ssh_key_id else None,
                devices[instance.id],
                groups[instance.id],
                region,
            ),
        )
        for instance in instances
    }


def _facts(
    instance: Instance,
    image: Image | None,
    rows: list[tuple[NetworkInterface, Network]],
    key: SshKeyPair | None,
    devices: list[str],
    group_names: list[str],
    region: str,
) -> InstanceFacts:
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
    keys = ((key.name, key.public_key),) if key is not None else ()
    return InstanceFacts(
        instance_id=instance.id,
        account_id=instance.account_id,
        image_id=instance.image_id,
        instance_type=instance.instance_type or f"c{instance.cpu_cores}m{instance.memory_size}",
        hostname=instance.hostname,
        domain=rows[0][1].domain if rows else "",
        architecture=image.arch if image else "x86_64",
        region=region,
        launched_at=instance.launched_at or instance.created_at,
        interfaces=interfaces,
        public_keys=keys,
        user_data=instance.user_data,
        block_devices=tuple((f"ebs{n}", device) for n, device in enumerate(devices, 1)),
        security_groups=tuple(group_names),
    )

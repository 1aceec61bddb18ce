"""The leak checker (`vdc-manage doctor`): what the hosts and the data dir hold, against
what the database says they should.

Two kinds of difference:
- orphan: something on a host (a domain, a volume, a DHCP entry or lease, a filter) or in the data
  dir (an image file, a console log) that no live database row accounts for;
- missing: a live row whose thing is not there. Only settled rows are checked for this
  (an instance `running` or `stopped`, a volume `available` or `attached`): a row in a
  transition may be waiting for its job to make it.
Terminating everything must leave no finding at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, col, select

from app.config import Settings
from app.models import HostNode, Image, Instance, Network, NetworkInterface, Volume
from app.models.instance import InstanceState
from app.models.volume import VolumeState
from app.services.hypervisors import driver_for
from app.services.network import nwfilters
from app.services.network.networks import libvirt_name
from app.services.storage import pools
from hypervisor.driver import HostDriver
from hypervisor.errors import HypervisorError

SETTLED_INSTANCE = (InstanceState.running, InstanceState.stopped)
SETTLED_VOLUME = (VolumeState.available, VolumeState.attached)


@dataclass(frozen=True, order=True)
class Finding:
    where: str  # a host's name, or "data dir"
    kind: str  # domain, volume, dhcp, lease, filter, image file, console log, host
    name: str
    problem: str  # "orphan", "missing" or what went wrong


def examine(session: Session, settings: Settings) -> list[Finding]:
    found: list[Finding] = []
    for host in session.exec(select(HostNode).order_by(col(HostNode.name))):
        try:
            found.extend(_examine_host(session, host, driver_for(host)))
        except HypervisorError as error:
            found.append(Finding(host.name, "host", host.uri, f"cannot examine: {error}"))
    found.extend(_examine_data_dir(session, settings))
    return sorted(found)


def _examine_host(session: Session, host: HostNode, driver: HostDriver) -> list[Finding]:
    where = host.name
    instances = list(session.exec(select(Instance).where(Instance.host_node_id == host.id)))
    live = {i.id: i for i in instances if i.state != InstanceState.terminated}
    settled = {i.id for i in live.values() if i.state in SETTLED_INSTANCE}
    found: list[Finding] = []

    domains = {d.name: d for d in driver.list_domains()}
    for name, domain in domains.items():
        owner = domain.instance_id or name
        if owner not in live and (domain.instance_id or name.startswith("i-")):
            found.append(Finding(where, "domain", name, "orphan"))
    found += [Finding(where, "domain", i, "missing") for i in sorted(settled - set(domains))]

    expected_volumes, settled_volumes = _expected_volumes(session, host, live, settled)
    for pool in (pools.INSTANCE_POOL, pools.VOLUME_POOL):
        present = {(pool, name) for name in driver.list_volumes(pool)}
        found += [
            Finding(where, "volume", f"{p}/{n}", "orphan")
            for p, n in sorted(present - expected_volumes[pool])
        ]
        found += [
            Finding(where, "volume", f"{p}/{n}", "missing")
            for p, n in sorted(settled_volumes[pool] - present)
        ]

    nics = _interfaces(session, live)
    for network_name in driver.list_networks():
        wanted = {nic.mac_address for nic, net in nics if libvirt_name(net) == network_name}
        settled_macs = {
            nic.mac_address
            for nic, net in nics
            if libvirt_name(net) == network_name and nic.instance_id in settled
        }
        entries = {entry.mac for entry in driver.dhcp_hosts(network_name)}
        found += [
            Finding(where, "dhcp", f"{network_name}/{mac}", "orphan")
            for mac in sorted(entries - wanted)
        ]
        found += [
            Finding(where, "dhcp", f"{network_name}/{mac}", "missing")
            for mac in sorted(settled_macs - entries)
        ]
        # A lease dnsmasq still holds for a MAC no live instance has (terminate releases it).
        leased = {lease.mac for lease in driver.dhcp_leases(network_name)}
        found += [
            Finding(where, "lease", f"{network_name}/{mac}", "orphan")
            for mac in sorted(leased - wanted)
        ]

    if driver.has_nwfilter():
        present_filters = set(driver.list_filters("vdc-vif-"))
        wanted_filters = {nwfilters.filter_name(nic) for nic, _ in nics}
        settled_filters = {nwfilters.filter_name(n) for n, _ in nics if n.instance_id in settled}
        found += [
            Finding(where, "filter", f, "orphan") for f in sorted(present_filters - wanted_filters)
        ]
        found += [
            Finding(where, "filter", f, "missing")
            for f in sorted(settled_filters - present_filters)
        ]
    return found


def _expected_volumes(
    session: Session, host: HostNode, live: dict[str, Instance], settled: set[str]
) -> tuple[dict[str, set[tuple[str, str]]], dict[str, set[tuple[str, str]]]]:
    """Per pool: the volumes that may be there, and those that must be."""
    may: dict[str, set[tuple[str, str]]] = {
        pools.INSTANCE_POOL: set(),
        pools.VOLUME_POOL: set(),
    }
    must: dict[str, set[tuple[str, str]]] = {
        pools.INSTANCE_POOL: set(),
        pools.VOLUME_POOL: set(),
    }
    for instance_id in live:
        entry = (pools.INSTANCE_POOL, pools.root_volume_name(instance_id))
        may[pools.INSTANCE_POOL].add(entry)
        if instance_id in settled:
            must[pools.INSTANCE_POOL].add(entry)
    for volume in session.exec(
        select(Volume)
        .where(Volume.host_node_id == host.id)
        .where(col(Volume.boot).is_(False))
        .where(col(Volume.state) != VolumeState.deleted)
    ):
        pool, name = pools.location(volume)
        may[pool].add((pool, name))
        if volume.state in SETTLED_VOLUME:
            must[pool].add((pool, name))
    return may, must


def _interfaces(
    session: Session, live: dict[str, Instance]
) -> list[tuple[NetworkInterface, Network]]:
    if not live:
        return []
    rows = session.exec(
        select(NetworkInterface, Network)
        .join(Network, col(Network.id) == NetworkInterface.network_id)
        .where(col(NetworkInterface.instance_id).in_(list(live)))
    ).all()
    return [(nic, network) for nic, network in rows]


def _examine_data_dir(session: Session, settings: Settings) -> list[Finding]:
    found: list[Finding] = []
    image_files = {image.file_name for image in session.exec(select(Image))}
    on_disk = (
        {p.name for p in settings.image_dir.iterdir()} if settings.image_dir.is_dir() else set()
    )
    # ".partial-*" files are uploads in progress (and swept at start); not leaks.
    on_disk = {name for name in on_disk if not name.startswith(".")}
    found += [Finding("data dir", "image file", n, "orphan") for n in sorted(on_disk - image_files)]
    found += [
        Finding("data dir", "image file", n, "missing") for n in sorted(image_files - on_disk)
    ]
    if settings.console_dir.is_dir():
        live = set(
            session.exec(select(Instance.id).where(col(Instance.state) != InstanceState.terminated))
        )
        for name in sorted(p.name for p in settings.console_dir.iterdir()):
            if name.removesuffix(".log") not in live:
                found.append(Finding("data dir", "console log", name, "orphan"))
    return found

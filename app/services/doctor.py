"""The leak checker (`vdc-manage doctor`): what the hosts and the data dir hold, against
what the database says they should.

Two kinds of difference:
- orphan: something on a host (a domain, a volume, a DHCP entry or lease, a filter, a
  member set) or in the data dir (an image file, a console log, a metadata drive) that no
  live database row accounts for;
- missing: a live row whose thing is not there. Only settled rows are checked for this
  (an instance `running` or `stopped`, a volume `available` or `attached` to nothing or to
  a settled instance): a row in a transition may be waiting for its job to make or remove it.
Terminating everything must leave no finding at all.

Operators run it from cron on busy systems, so it never trusts one look. Each host is read
after the database: a thing that vanishes between the host's listing and the look at it is
not there; a job that creates or removes something between the two reads makes a difference
that is gone at a second look, with the database read again. Only what both looks find is
reported.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, col, select

from app.config import Settings
from app.models import HostNode, Image, ImageCopy, Instance, Network, NetworkInterface, Volume
from app.models.image import ImageState
from app.models.image_copy import CopyState
from app.models.instance import InstanceState
from app.models.volume import VolumeState
from app.services.compute import metadata_drive
from app.services.compute.probe_disk import NAME as PROBE_DISK
from app.services.hypervisors import driver_for, shell_for
from app.services.network import fabric, nwfilters
from app.services.network.networks import libvirt_name
from app.services.storage import pools
from hypervisor.driver import HostDriver
from hypervisor.errors import HypervisorError, NotFoundOnHost
from hypervisor.member_sets import MemberSets, set_name
from hypervisor.segments import SegmentSteps

SETTLED_INSTANCE = (InstanceState.running, InstanceState.stopped)
SETTLED_VOLUME = (VolumeState.available, VolumeState.attached)


@dataclass(frozen=True, order=True)
class Finding:
    where: str  # a host's name, or "data dir"
    kind: str  # domain, volume, dhcp, lease, filter, member set, image file, console log, host
    name: str
    problem: str  # "orphan", "missing" or what went wrong


def examine(session: Session, settings: Settings) -> list[Finding]:
    first = _look(session, settings)
    if not first:
        return []
    session.rollback()  # a fresh read of the database: what jobs did meanwhile counts
    second = _look(session, settings)
    return sorted(set(first) & set(second))


def _look(session: Session, settings: Settings) -> list[Finding]:
    found: list[Finding] = []
    for host in session.exec(select(HostNode).order_by(col(HostNode.name))):
        try:
            driver = driver_for(host)
            found.extend(_examine_host(session, host, driver))
            if not pools.keeps_files_here(driver):
                found.extend(_examine_image_copies(session, host, driver))
            if not driver.is_test():
                found.extend(_examine_segments(session, settings, host))
                found.extend(_examine_member_sets(session, settings, host))
        except HypervisorError as error:
            found.append(Finding(host.name, "host", host.uri, f"cannot examine: {error}"))
    found.extend(_examine_data_dir(session, settings))
    return found


def _examine_host(session: Session, host: HostNode, driver: HostDriver) -> list[Finding]:
    where = host.name
    # The database first, then the host (see the module's docstring).
    instances = list(session.exec(select(Instance).where(Instance.host_node_id == host.id)))
    live = {i.id: i for i in instances if i.state != InstanceState.terminated}
    settled = {i.id for i in live.values() if i.state in SETTLED_INSTANCE}
    expected_volumes, settled_volumes = _expected_volumes(session, host, live, settled)
    nics = _interfaces(session, live)
    # DHCP entries live on the host that serves the network: the network node, for the
    # guests of every host (network/fabric.py), or each host for its own.
    node = fabric.network_node(session)
    served = _interfaces(session, _live(session)) if node and node.id == host.id else nics
    settled_everywhere = {
        i.id for i in _live(session).values() if i.state in SETTLED_INSTANCE
    } | settled
    found: list[Finding] = []

    domains = {d.name: d for d in driver.list_domains()}
    for name, domain in domains.items():
        owner = domain.instance_id or name
        if owner not in live and (domain.instance_id or name.startswith("i-")):
            found.append(Finding(where, "domain", name, "orphan"))
    found += [Finding(where, "domain", i, "missing") for i in sorted(settled - set(domains))]

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

    for network_name in driver.list_networks():
        wanted = {nic.mac_address for nic, net in served if libvirt_name(net) == network_name}
        settled_macs = {
            nic.mac_address
            for nic, net in served
            if libvirt_name(net) == network_name and nic.instance_id in settled_everywhere
        }
        try:
            entries = {entry.mac for entry in driver.dhcp_hosts(network_name)}
        except NotFoundOnHost:
            continue  # removed since the listing: not there
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


def _examine_image_copies(session: Session, host: HostNode, driver: HostDriver) -> list[Finding]:
    """The host's image pool against the copies vdc recorded there."""
    copies = session.exec(select(ImageCopy).where(ImageCopy.host_node_id == host.id)).all()
    recorded = {copy.volume for copy in copies if copy.state != CopyState.failed}
    available = {copy.volume for copy in copies if copy.state == CopyState.available}
    present = set(driver.list_volumes(pools.IMAGE_POOL)) - {PROBE_DISK}
    return [
        Finding(host.name, "image copy", f"{pools.IMAGE_POOL}/{name}", "orphan")
        for name in sorted(present - recorded)
    ] + [
        Finding(host.name, "image copy", f"{pools.IMAGE_POOL}/{name}", "missing")
        for name in sorted(available - present)
    ]


def _examine_segments(session: Session, settings: Settings, host: HostNode) -> list[Finding]:
    """The host's bridges, VXLAN ports and flood entries against its networks' members."""
    node = fabric.network_node(session)
    if node is None:
        return []
    wanted: dict[str, tuple[str, ...]] = {}  # VXLAN port -> its peers' addresses
    own_bridges: set[str] = set()
    for network in session.exec(select(Network)):
        members = fabric.members(session, network, node)
        if host.id not in {m.id for m in members} or len(members) < 2:
            continue
        segment = fabric.segment(network, host, members, node)
        wanted[segment.vxlan] = segment.peers
        if segment.own_bridge:
            own_bridges.add(segment.bridge)
    state = SegmentSteps(shell_for(settings, host)).state()
    found = [
        Finding(host.name, "vxlan port", name, "orphan")
        for name in sorted(set(state.vxlans) - set(wanted))
    ] + [
        Finding(host.name, "vxlan port", name, "missing")
        for name in sorted(set(wanted) - set(state.vxlans))
    ]
    if host.id != node.id:  # the network node's bridges are libvirt's networks'
        found += [
            Finding(host.name, "bridge", name, "orphan")
            for name in sorted(set(state.bridges) - own_bridges)
        ]
    for port in sorted(set(wanted) & set(state.vxlans)):
        have, want = set(state.vxlans[port]), set(wanted[port])
        found += [
            Finding(host.name, "flood entry", f"{port}/{ip}", "orphan")
            for ip in sorted(have - want)
        ]
        found += [
            Finding(host.name, "flood entry", f"{port}/{ip}", "missing")
            for ip in sorted(want - have)
        ]
    return found


def _examine_member_sets(session: Session, settings: Settings, host: HostNode) -> list[Finding]:
    """The host's ipsets of security groups' members against the groups its guests' filters
    name (network/nwfilters.py): one no filter wants, or one a running guest's filter
    matches and the host lacks (its guest admits none of the group then)."""
    wanted = {set_name(g) for g in nwfilters.source_groups_on(session, host.id)}
    running = nwfilters.source_groups_on(session, host.id, (InstanceState.running,))
    present = set(MemberSets(shell_for(settings, host)).names())
    return [
        Finding(host.name, "member set", name, "orphan") for name in sorted(present - wanted)
    ] + [
        Finding(host.name, "member set", name, "missing")
        for name in sorted({set_name(g) for g in running} - present)
    ]


def _live(session: Session) -> dict[str, Instance]:
    rows = session.exec(select(Instance).where(col(Instance.state) != InstanceState.terminated))
    return {instance.id: instance for instance in rows}


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
    for instance_id, instance in live.items():
        entries = [(pools.INSTANCE_POOL, pools.root_volume_name(instance_id))]
        if instance.metadata_drive:
            entries.append((pools.INSTANCE_POOL, metadata_drive.volume_name(instance_id)))
        may[pools.INSTANCE_POOL].update(entries)
        if instance_id in settled:
            must[pools.INSTANCE_POOL].update(entries)
    # The copy of a root disk that an image capture is bringing to the image store.
    for image_id in session.exec(select(Image.id).where(Image.state == ImageState.creating)):
        may[pools.INSTANCE_POOL].add((pools.INSTANCE_POOL, pools.capture_volume_name(image_id)))
    for volume in session.exec(
        select(Volume)
        .where(Volume.host_node_id == host.id)
        .where(col(Volume.boot).is_(False))
        .where(col(Volume.state) != VolumeState.deleted)
    ):
        pool, name = pools.location(volume)
        may[pool].add((pool, name))
        # A volume of an instance being launched or terminated changes with it.
        if volume.state in SETTLED_VOLUME and volume.instance_id in (None, *settled):
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
    images = list(session.exec(select(Image)))
    image_files = {image.file_name for image in images}
    # A capture's image has its file only once available (a failed one never has one).
    expected_files = {i.file_name for i in images if i.state == ImageState.available}
    on_disk = (
        {p.name for p in settings.image_dir.iterdir()} if settings.image_dir.is_dir() else set()
    )
    # ".partial-*" files are uploads in progress (and swept at start); not leaks.
    on_disk = {name for name in on_disk if not name.startswith(".")}
    found += [Finding("data dir", "image file", n, "orphan") for n in sorted(on_disk - image_files)]
    found += [
        Finding("data dir", "image file", n, "missing") for n in sorted(expected_files - on_disk)
    ]
    live = set(
        session.exec(select(Instance.id).where(col(Instance.state) != InstanceState.terminated))
    )
    if settings.console_dir.is_dir():
        for name in sorted(p.name for p in settings.console_dir.iterdir()):
            if name.removesuffix(".log") not in live:
                found.append(Finding("data dir", "console log", name, "orphan"))
    # The metadata drives built here for the hosts ("." files: builds under way).
    drives = settings.data_dir / metadata_drive.FOLDER
    if drives.is_dir():
        for name in sorted(p.name for p in drives.iterdir() if not p.name.startswith(".")):
            if name.removesuffix(".img") not in live:
                found.append(Finding("data dir", "metadata drive", name, "orphan"))
    return found

"""A vdc network across hosts: one layer-2 segment on every host that has a guest on it.

The network node, the host vdc runs on (its URI names no other machine), keeps the
network's services: libvirt's network with dnsmasq (the static DHCP entries of every guest,
wherever it runs), the gateway and NAT, and the metadata redirect. Every other host with a
guest on the network has a plain bridge of the same name. When the segment spans more than
one host, each member's bridge gets a VXLAN port (the network's VNI) with a flood entry for
every other member's tunnel address, so guests on any host get DHCP, DNS, the gateway and
169.254.169.254 from the network node, with their own source address.

Without a network node (only remote hosts, or libvirt's test driver), each host runs the
network's services itself, as a one-host data center does.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from sqlmodel import Session, col, select

from app.config import split_bind
from app.errors import Conflict
from app.models import HostNode, Instance, Network, NetworkInterface
from app.models.instance import InstanceState
from app.services.hypervisors import driver_for, shell_for
from app.services.jobs_context import JobContext
from app.services.network.host_locks import HostLocks
from app.services.network.networks import MTU, libvirt_name, spec_for
from hypervisor.segments import SegmentSteps
from hypervisor.specs import DhcpHost, InterfaceSpec, SegmentSpec


def network_node(session: Session) -> HostNode | None:
    """The host vdc runs on, if it is one of the hosts (the first registered, if several
    URIs name it)."""
    for host in session.exec(select(HostNode).order_by(col(HostNode.created_at))):
        if _is_this_machine(host.uri):
            return host
    return None


def services_host(session: Session, host: HostNode) -> HostNode:
    """Where a guest on `host` gets DHCP, its gateway and the metadata service from."""
    return network_node(session) or host


def attach(
    ctx: JobContext, network: Network, host: HostNode, nic: InterfaceSpec, entry: DhcpHost
) -> InterfaceSpec:
    """Everything a guest's NIC on `network` needs, for a guest on `host`: the network's
    services with its DHCP entry, the segment on `host`, and the members' flood entries.
    Returns the NIC as `host` must plug it in (into the libvirt network, or the bridge)."""
    with ctx.session() as session:
        node = network_node(session)
    services = node or host
    spec = spec_for(network)
    driver = driver_for(services)
    driver.ensure_network(spec)
    driver.ensure_metadata_redirect(spec, split_bind(ctx.settings.metadata_bind)[1])
    if node is not None:
        _converge(ctx, network, node, joining=host)
    driver.add_dhcp_host(libvirt_name(network), entry)
    if services.id == host.id:
        return _plugged(nic, network=libvirt_name(network))
    return _plugged(nic, bridge=network.bridge)


def remove_dhcp_entry(ctx: JobContext, network: Network, host: HostNode, entry: DhcpHost) -> None:
    """The guest's static entry goes, and its lease (so its address can be handed out)."""
    with ctx.session() as session:
        services = services_host(session, host)
    driver = driver_for(services)
    driver.remove_dhcp_host(libvirt_name(network), entry.mac)
    driver.release_dhcp_lease(libvirt_name(network), entry)


def detach(ctx: JobContext, network: Network, host: HostNode) -> None:
    """After a guest's NIC left `network` on `host`: if it was the host's last guest there,
    the host's bridge and VXLAN port go, and the other members forget the host."""
    converge(ctx, network, leaving=host)


def members(
    session: Session, network: Network, node: HostNode, joining: HostNode | None = None
) -> list[HostNode]:
    """The hosts on the network's segment: those with a guest on it, and the network node."""
    ids = _guest_hosts(session, network.id) | {node.id}
    if joining is not None:
        ids.add(joining.id)
    return list(session.exec(select(HostNode).where(col(HostNode.id).in_(ids))))


def segment(network: Network, host: HostNode, hosts: list[HostNode], node: HostNode) -> SegmentSpec:
    """The host's part of the network's segment among `hosts` (its members)."""
    peers = tuple(sorted(m.tunnel_ip for m in hosts if m.id != host.id))
    return _segment(network, host, peers, own=host.id != node.id)


def converge(
    ctx: JobContext,
    network: Network,
    joining: HostNode | None = None,
    leaving: HostNode | None = None,
) -> None:
    """Brings every member's segment (bridge, VXLAN port, flood entries to all the others),
    and a host that left, in line with who is on the network now.

    Jobs of several guests run this at once. Each host is settled under its lock with the
    membership read under that lock, so whichever job comes last acts on the newest state
    (a job's earlier reading never undoes a later change)."""
    with ctx.session() as session:
        node = network_node(session)
    if node is None:
        return  # every host serves its own copy of the network: nothing to join
    _converge(ctx, network, node, joining, leaving)


def _converge(
    ctx: JobContext,
    network: Network,
    node: HostNode,
    joining: HostNode | None = None,
    leaving: HostNode | None = None,
) -> None:
    with ctx.session() as session:
        targets = {h.id: h for h in members(session, network, node, joining)}
    if leaving is not None:
        targets.setdefault(leaving.id, leaving)
    for host in targets.values():
        with _host_lock(host.id):
            with ctx.session() as session:
                current = members(session, network, node, joining)
            _settle(ctx, network, host, node, current)


def _settle(
    ctx: JobContext, network: Network, host: HostNode, node: HostNode, hosts: list[HostNode]
) -> None:
    steps = SegmentSteps(shell_for(ctx.settings, host))
    if host.id in {h.id for h in hosts} and len(hosts) > 1:
        for member in hosts:
            if not member.tunnel_ip:
                raise Conflict(
                    f"host {member.name} has no tunnel address, so network {network.id} "
                    f"cannot reach it from the other hosts: vdc-manage host update "
                    f"{member.name} --tunnel-ip ADDRESS"
                )
        steps.ensure(segment(network, host, hosts, node))
    elif host.id != node.id or host.tunnel_ip:  # (a lone network node never had a port)
        steps.remove(_segment(network, host, (), own=host.id != node.id))


_host_lock = HostLocks()  # a host's segments: one membership change at a time


def _segment(network: Network, host: HostNode, peers: tuple[str, ...], own: bool) -> SegmentSpec:
    return SegmentSpec(
        bridge=network.bridge,
        vni=network.vni,
        local_ip=host.tunnel_ip,
        peers=peers,
        mtu=MTU,
        own_bridge=own,
    )


def _guest_hosts(session: Session, network_id: str) -> set[str]:
    """Hosts with a guest (not terminated) that has a NIC on the network."""
    rows = session.exec(
        select(Instance.host_node_id)
        .join(NetworkInterface, col(NetworkInterface.instance_id) == Instance.id)
        .where(NetworkInterface.network_id == network_id)
        .where(col(Instance.state) != InstanceState.terminated)
        .where(col(Instance.host_node_id).is_not(None))
        .distinct()
    )
    return {host_id for host_id in rows if host_id}


def _plugged(nic: InterfaceSpec, **where: str) -> InterfaceSpec:
    return InterfaceSpec(
        mac=nic.mac, model=nic.model, filter=nic.filter, ip=nic.ip, mtu=MTU, **where
    )


def _is_this_machine(uri: str) -> bool:
    """qemu:///system (no host part): the hypervisor of the machine vdc runs on."""
    parts = urlsplit(uri)
    return parts.scheme != "test" and not parts.netloc

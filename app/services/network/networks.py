"""Networks: validated address plans; each becomes a libvirt network on the hosts using it."""

from __future__ import annotations

import ipaddress

import sqlalchemy as sa
from sqlmodel import Session, col, select

from app.errors import BadRequest, Conflict
from app.ids import new_id
from app.models import Account, HostNode, Network, NetworkInterface
from app.models.network import NetworkCreate, NetworkPublic, NetworkUpdate
from app.services import access
from app.services.hypervisors import driver_for
from app.services.listing import PageRequest
from hypervisor.errors import HypervisorError
from hypervisor.specs import NetworkSpec

SORTABLE = ("created_at", "name", "id", "cidr")
FIRST_VNI = 1000  # VXLAN segment ids of vdc networks count up from here
MTU = 1450  # a 1500-byte underlay less VXLAN's 50 bytes: guests on every host use this


def libvirt_name(network: Network) -> str:
    return f"vdc-{network.id}"


def spec_for(network: Network) -> NetworkSpec:
    prefix = ipaddress.ip_network(network.cidr).prefixlen
    return NetworkSpec(
        name=libvirt_name(network),
        bridge=network.bridge,
        gateway=network.gateway,
        prefix=prefix,
        dhcp_start=network.dhcp_start,
        dhcp_end=network.dhcp_end,
        dns_servers=tuple(s for s in network.dns_servers.split(",") if s),
        domain=network.domain or None,
        forward="nat",
        mtu=MTU,
    )


def _address(value: str, what: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(value)
    except ValueError as exc:
        raise BadRequest(f"{what} {value!r} is not an IPv4 address") from exc


def _plan(body: NetworkCreate) -> tuple[ipaddress.IPv4Network, str, str, str]:
    try:
        cidr = ipaddress.IPv4Network(body.cidr, strict=True)
    except ValueError as exc:
        raise BadRequest(f"cidr {body.cidr!r} is not an IPv4 network ({exc})") from exc
    if cidr.prefixlen > 29:
        raise BadRequest("the network is too small: use a prefix of /29 or shorter")
    first = cidr.network_address + 1
    last = cidr.broadcast_address - 1
    gateway = _address(body.gateway, "gateway") if body.gateway else first
    start = _address(body.dhcp_start, "dhcp_start") if body.dhcp_start else gateway + 1
    end = _address(body.dhcp_end, "dhcp_end") if body.dhcp_end else last
    for value, what in ((gateway, "gateway"), (start, "dhcp_start"), (end, "dhcp_end")):
        if not first <= value <= last:
            raise BadRequest(f"{what} {value} is outside {cidr} (usable: {first} - {last})")
    if start > end:
        raise BadRequest(f"dhcp_start {start} is after dhcp_end {end}")
    if start <= gateway <= end:
        raise BadRequest(f"the gateway {gateway} lies inside the DHCP range {start} - {end}")
    for server in body.dns_servers:
        _address(server, "dns server")
    return cidr, str(gateway), str(start), str(end)


def create_network(session: Session, body: NetworkCreate) -> Network:
    cidr, gateway, start, end = _plan(body)
    for other in session.exec(select(Network)):
        if cidr.overlaps(ipaddress.IPv4Network(other.cidr)):
            raise Conflict(f"{cidr} overlaps network {other.id} ({other.name}, {other.cidr})")
        if other.name == body.name:
            raise Conflict(f"a network named {body.name!r} already exists")
    if body.account_id and session.get(Account, body.account_id) is None:
        raise BadRequest(f"account {body.account_id} does not exist")
    network_id = new_id("network")
    network = Network(
        id=network_id,
        name=body.name,
        cidr=str(cidr),
        gateway=gateway,
        dhcp_start=start,
        dhcp_end=end,
        dns_servers=",".join(body.dns_servers),
        domain=body.domain,
        is_default=body.is_default,
        account_id=body.account_id,
        bridge="vdc" + network_id.removeprefix("nw-"),  # 11 characters: fits IFNAMSIZ
        vni=(session.scalar(sa.select(sa.func.max(Network.vni))) or FIRST_VNI - 1) + 1,
    )
    if body.is_default:
        _clear_default(session)
    session.add(network)
    session.commit()
    return network


def _clear_default(session: Session) -> None:
    for other in session.exec(select(Network).where(col(Network.is_default))):
        other.is_default = False
        session.add(other)


def default_network(session: Session, account: Account) -> Network:
    network = session.exec(access.visible(account, Network).where(col(Network.is_default))).first()
    if network is None:
        raise BadRequest(
            "no network_id given and there is no default network; ask an admin to create one"
        )
    return network


def list_networks(
    session: Session, account: Account, page: PageRequest
) -> tuple[list[Network], int]:
    return access.page(session, account, Network, page, SORTABLE)


def addresses_in_use(session: Session, network_ids: list[str]) -> dict[str, int]:
    rows = session.exec(
        select(NetworkInterface.network_id, sa.func.count())
        .where(col(NetworkInterface.network_id).in_(network_ids))
        .group_by(NetworkInterface.network_id)
    ).all()
    return {network_id: int(count) for network_id, count in rows}


def public(session: Session, networks: list[Network]) -> list[NetworkPublic]:
    used = addresses_in_use(session, [n.id for n in networks])
    return [
        NetworkPublic.model_validate(
            {
                **n.model_dump(),
                "dns_servers": [s for s in n.dns_servers.split(",") if s],
                "addresses_in_use": used.get(n.id, 0),
            }
        )
        for n in networks
    ]


def update_network(
    session: Session, account: Account, network_id: str, body: NetworkUpdate
) -> Network:
    network = access.get(session, account, Network, network_id)
    if body.dns_servers is not None:
        for server in body.dns_servers:
            _address(server, "dns server")
        network.dns_servers = ",".join(body.dns_servers)
    if body.domain is not None:
        network.domain = body.domain
    if body.is_default is not None:
        if body.is_default:
            _clear_default(session)
        network.is_default = body.is_default
    session.add(network)
    session.commit()
    return network


def delete_network(session: Session, account: Account, network_id: str) -> list[str]:
    """Deletes an unused network, then its libvirt networks on the hosts that answer.

    Returns the names of hosts it could not reach, whose copy an operator removes by hand.
    """
    network = access.get(session, account, Network, network_id)
    in_use = addresses_in_use(session, [network.id]).get(network.id, 0)
    if in_use:
        raise Conflict(f"network {network.id} is in use by {in_use} interface(s)")
    session.delete(network)
    session.commit()
    unreachable = []
    for host in session.exec(select(HostNode)):
        try:
            driver_for(host).delete_network(libvirt_name(network))
        except HypervisorError:
            unreachable.append(host.name)
    return unreachable

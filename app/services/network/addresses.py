"""MAC and IP allocation: vdc chooses both (not dnsmasq), unique by database constraint; and
the interfaces (each an address lease) of instances.

Under concurrent launches two transactions may pick the same address; the unique
constraints make one of them fail, and it simply tries again with another address.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.errors import Conflict
from app.ids import new_id
from app.models import Network, NetworkInterface

MAC_PREFIX = "52:54:00"  # the locally administered range KVM guests use
_ATTEMPTS = 64
CANDIDATES = 32  # free addresses read per try; a clash takes a random one of them


def random_mac() -> str:
    return MAC_PREFIX + "".join(f":{b:02x}" for b in secrets.token_bytes(3))


def free_addresses(session: Session, network: Network, limit: int) -> list[str]:
    """Up to `limit` unused addresses of the DHCP range, lowest first."""
    used = set(
        session.exec(
            select(NetworkInterface.ip_address).where(NetworkInterface.network_id == network.id)
        )
    )
    # Walked as integers, each formatted by the C library: one IPv4Address per address
    # (add, compare, str) was most of a launch's address allocation at a few hundred
    # instances in the network, and grows with them.
    start = int(ipaddress.IPv4Address(network.dhcp_start))
    end = int(ipaddress.IPv4Address(network.dhcp_end))
    found: list[str] = []
    number = start
    while number <= end and len(found) < limit:
        address = socket.inet_ntoa(number.to_bytes(4, "big"))
        if address not in used:
            found.append(address)
        number += 1
    return found


def allocate_interface(
    session: Session,
    instance_id: str,
    network: Network,
    device_index: int = 0,
    candidates: list[str] | None = None,
) -> NetworkInterface:
    """Adds a NIC with a fresh MAC and the lowest free IP (another free one on a clash).
    `candidates`: free_addresses read before the caller's first write (the first try)."""
    for attempt in range(_ATTEMPTS):
        if attempt or candidates is None:
            candidates = free_addresses(session, network, CANDIDATES)
        if not candidates:
            raise Conflict(
                f"network {network.id} has no free address left "
                f"in {network.dhcp_start} - {network.dhcp_end}"
            )
        ip = candidates[0] if attempt == 0 else secrets.choice(candidates)
        interface = NetworkInterface(
            id=new_id("interface"),
            instance_id=instance_id,
            network_id=network.id,
            device_index=device_index,
            mac_address=random_mac(),
            ip_address=ip,
        )
        savepoint = session.begin_nested()
        try:
            session.add(interface)
            session.flush()
        except IntegrityError:
            savepoint.rollback()
            continue
        savepoint.commit()
        return interface
    raise Conflict(
        f"could not allocate an address on network {network.id}; too many launches at once, retry"
    )


def interfaces_of(session: Session, instance_ids: list[str]) -> dict[str, list[NetworkInterface]]:
    """instance id -> its NICs in device order."""
    found: dict[str, list[NetworkInterface]] = {i: [] for i in instance_ids}
    rows = session.exec(
        select(NetworkInterface)
        .where(col(NetworkInterface.instance_id).in_(instance_ids))
        .order_by(col(NetworkInterface.device_index))
    )
    for interface in rows:
        found[interface.instance_id].append(interface)
    return found


def first_addresses(
    session: Session, instance_ids: list[str] | sa.Select[str]
) -> dict[str, tuple[str, str]]:
    """instance id -> (IP, MAC) of its first NIC in device order (no NIC: not in the dict),
    as plain rows: for tables of thousands of instances (vdc-manage), where interfaces_of's
    ORM objects cost more than the query. The instances: ids, or a select of them."""
    found: dict[str, tuple[str, str]] = {}
    rows = session.execute(
        select(
            NetworkInterface.instance_id, NetworkInterface.ip_address, NetworkInterface.mac_address
        )
        .where(col(NetworkInterface.instance_id).in_(instance_ids))
        .order_by(col(NetworkInterface.device_index))
    )
    for instance_id, ip_address, mac_address in rows:
        found.setdefault(instance_id, (ip_address, mac_address))
    return found

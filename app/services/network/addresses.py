"""MAC and IP allocation: vdc chooses both (not dnsmasq), unique by database constraint; and
the interfaces (each an address lease) of instances.

Under concurrent launches two transactions may pick the same address; the unique
constraints make one of them fail, and it simply tries again with another address.
"""

from __future__ import annotations

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


def address_number(address: str) -> int:
    """An IPv4 address as the integer NetworkInterface.ip_number stores."""
    return int.from_bytes(socket.inet_aton(address), "big")


def _address(number: int) -> str:
    return socket.inet_ntoa(number.to_bytes(4, "big"))


def free_addresses(session: Session, network: Network, limit: int) -> list[str]:
    """Up to `limit` unused addresses of the DHCP range, lowest first: those after the
    highest address in use; once the range's last address is taken, the lowest free ones.

    After the highest, not the lowest free: the highest is one step of an index
    (ix_network_interfaces_network_number) however many leases the network has, where the
    lowest free address meant reading every lease (22 ms a launch at 20,000). And an address
    that a terminated instance just gave back is not handed to the next launch at once while
    the range has others: whoever still talks to it reaches nobody, not a stranger."""
    start, end = address_number(network.dhcp_start), address_number(network.dhcp_end)
    in_range = (
        col(NetworkInterface.network_id) == network.id,
        col(NetworkInterface.ip_number).between(start, end),
    )
    highest = session.exec(select(sa.func.max(NetworkInterface.ip_number)).where(*in_range)).one()
    first = start if highest is None else highest + 1
    if first <= end:
        return [_address(number) for number in range(first, min(end, first + limit - 1) + 1)]
    # The range's top is taken: the gaps the terminated left, read whole (the cost of the
    # lowest free address, paid only by a network this full).
    used = set(session.exec(select(NetworkInterface.ip_number).where(*in_range)))
    found: list[str] = []
    number = start
    while number <= end and len(found) < limit:
        if number not in used:
            found.append(_address(number))
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
            ip_number=address_number(ip),
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

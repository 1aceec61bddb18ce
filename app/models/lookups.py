"""Reads that both the control plane and the metadata service need. They live with the
models because the metadata process imports models and its own code only, never the
services (and their graph of libvirt, jobs and placement)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Session, col, select

from app.models.instance import NetworkInterface
from app.models.network import Network

# Built once: every job loads its instance's NICs. Parameter: instance_ids.
_INTERFACES_WITH_NETWORKS = (
    select(NetworkInterface, Network)
    .join(Network, col(Network.id) == NetworkInterface.network_id)
    .where(col(NetworkInterface.instance_id).in_(sa.bindparam("instance_ids", expanding=True)))
    .order_by(col(NetworkInterface.device_index))
)


def interfaces_with_networks(
    session: Session, instance_id: str
) -> list[tuple[NetworkInterface, Network]]:
    """An instance's NICs in device order, each with its network."""
    return interfaces_with_networks_of(session, [instance_id])[instance_id]


def interfaces_with_networks_of(
    session: Session, instance_ids: list[str]
) -> dict[str, list[tuple[NetworkInterface, Network]]]:
    """instance id -> its NICs in device order, each with its network, in one query."""
    found: dict[str, list[tuple[NetworkInterface, Network]]] = {i: [] for i in instance_ids}
    rows = session.exec(_INTERFACES_WITH_NETWORKS, params={"instance_ids": instance_ids})
    for nic, network in rows:
        found[nic.instance_id].append((nic, network))
    return found

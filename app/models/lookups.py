"""Reads that both the control plane and the metadata service need. They live with the
models because the metadata process imports models and its own code only, never the
services (and their graph of libvirt, jobs and placement)."""

from __future__ import annotations

from sqlmodel import Session, col, select

from app.models.instance import NetworkInterface
from app.models.network import Network


def interfaces_with_networks(
    session: Session, instance_id: str
) -> list[tuple[NetworkInterface, Network]]:
    """An instance's NICs in device order, each with its network."""
    rows = session.exec(
        select(NetworkInterface, Network)
        .join(Network, col(Network.id) == NetworkInterface.network_id)
        .where(NetworkInterface.instance_id == instance_id)
        .order_by(col(NetworkInterface.device_index))
    ).all()
    return [(nic, network) for nic, network in rows]

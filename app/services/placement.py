"""The scheduler: which host gets a new instance, and which a new volume."""

from __future__ import annotations

import threading

import sqlalchemy as sa
from sqlmodel import Session, col, select

from app.config import Settings
from app.errors import Conflict
from app.models import HostNode, Volume
from app.models.host_node import HostStatus
from app.models.volume import VolumeState
from app.services.hosts import get_host, usage

# SQLite has no row locks; within one process this keeps two launches from both taking the
# last room on a host. PostgreSQL deployments also lock the chosen host row (FOR UPDATE).
PLACEMENT_LOCK = threading.Lock()


_AVAILABLE = (  # built once: every launch asks
    select(HostNode).where(col(HostNode.enabled)).where(col(HostNode.status) == HostStatus.online)
)


def available_hosts(session: Session) -> list[HostNode]:
    """Hosts that take new instances and volumes: enabled and online. Conflict if none."""
    hosts = list(session.exec(_AVAILABLE))
    if not hosts:
        raise Conflict("no host is available: none is registered, enabled and online")
    return hosts


def choose_host(
    session: Session,
    settings: Settings,
    cpu_cores: int,
    memory_size: int,
    pinned: str | None = None,
) -> HostNode:
    """An enabled, online host with room; spreads by picking the most free memory. An
    admin may pin the host (Wakame-vdc's specify_node): it must still have room.

    Room counts host cores times VDC_CPU_ALLOCATION_RATIO (guests seldom use all their
    cores) and memory times VDC_MEMORY_ALLOCATION_RATIO (1.0 by default: no overcommit).
    """
    hosts = [usable_host(session, pinned)] if pinned is not None else available_hosts(session)
    used = usage(session, [h.id for h in hosts])
    fitting = []
    for host in hosts:
        cpu_used, memory_used = used.get(host.id, (0, 0))
        free_cpu = host.cpu_cores * settings.cpu_allocation_ratio - cpu_used
        free_memory = host.memory_size * settings.memory_allocation_ratio - memory_used
        if free_cpu >= cpu_cores and free_memory >= memory_size:
            fitting.append((free_memory, free_cpu, host.id, host))
    if not fitting:
        raise Conflict(
            f"no host has room for {cpu_cores} core(s) and {memory_size} MiB "
            f"({len(hosts)} online host(s) checked)"
        )
    _, _, host_id, host = max(fitting)
    if session.get_bind().dialect.name != "postgresql":
        # SQLite has no row locks (FOR UPDATE is left out): the read below would only read
        # the host again. Launches take PLACEMENT_LOCK there.
        return host
    return session.exec(select(HostNode).where(HostNode.id == host_id).with_for_update()).one()


def host_for_volume(session: Session) -> HostNode:
    """The enabled, online host holding the fewest volume bytes."""
    hosts = available_hosts(session)
    held = dict(
        session.exec(
            select(Volume.host_node_id, sa.func.sum(Volume.size))
            .where(col(Volume.state) != VolumeState.deleted)
            .group_by(Volume.host_node_id)
        ).all()
    )
    return min(hosts, key=lambda host: (held.get(host.id) or 0, host.id))


def usable_host(session: Session, host_id: str) -> HostNode:
    """A host asked for by name or id, if it takes new work."""
    host = get_host(session, host_id)
    if not host.enabled or host.status != HostStatus.online:
        raise Conflict(f"host {host.id} is not enabled and online")
    return host

"""The scheduler: which host gets a new instance."""

from __future__ import annotations

import threading

from sqlmodel import Session, col, select

from app.errors import Conflict
from app.models import HostNode
from app.models.host_node import HostStatus
from app.services.hosts import usage

# SQLite has no row locks; within one process this keeps two launches from both taking the
# last room on a host. PostgreSQL deployments also lock the chosen host row (FOR UPDATE).
PLACEMENT_LOCK = threading.Lock()


def choose_host(session: Session, cpu_cores: int, memory_size: int) -> HostNode:
    """An enabled, online host with room; spreads by picking the most free memory."""
    hosts = list(
        session.exec(
            select(HostNode)
            .where(col(HostNode.enabled))
            .where(HostNode.status == HostStatus.online)
        )
    )
    if not hosts:
        raise Conflict("no host is available: none is registered, enabled and online")
    used = usage(session, [h.id for h in hosts])
    fitting = []
    for host in hosts:
        cpu_used, memory_used = used.get(host.id, (0, 0))
        free_cpu, free_memory = host.cpu_cores - cpu_used, host.memory_size - memory_used
        if free_cpu >= cpu_cores and free_memory >= memory_size:
            fitting.append((free_memory, free_cpu, host.id, host))
    if not fitting:
        raise Conflict(
            f"no host has room for {cpu_cores} core(s) and {memory_size} MiB "
            f"({len(hosts)} online host(s) checked)"
        )
    _, _, host_id, _ = max(fitting)
    locked = session.exec(select(HostNode).where(HostNode.id == host_id).with_for_update()).one()
    return locked

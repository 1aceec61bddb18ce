"""Host nodes: register, list with their load, enable/disable, delete, and health checks."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlmodel import Session, col, select

from app.config import Settings
from app.errors import BadRequest, Conflict, NotFound
from app.ids import new_id
from app.models import HostNode, Instance
from app.models.common import utcnow
from app.models.host_node import HostNodeCreate, HostNodePublic, HostNodeUpdate, HostStatus
from app.models.instance import InstanceState
from app.services import host_uris
from app.services.changes import apply_changes
from app.services.hypervisors import driver_for
from app.services.listing import PageRequest, fetch_page
from hypervisor.errors import HypervisorError

SORTABLE = ("created_at", "name", "id", "status")
# Instances in these states hold no cpu or memory on their host.
RELEASED_STATES = (InstanceState.terminated,)
# The others, named: `state IN` these is a few steps of ix_instances_host_state, where
# `state NOT IN` the released visited every terminated instance the host ever ran.
HOLDING_STATES = tuple(s for s in InstanceState if s not in RELEASED_STATES)


def add_host(session: Session, settings: Settings, body: HostNodeCreate) -> HostNode:
    host_uris.check(settings, body.uri)
    if session.exec(select(HostNode).where(HostNode.name == body.name)).first():
        raise Conflict(f"a host named {body.name!r} already exists")
    if session.exec(select(HostNode).where(HostNode.uri == body.uri)).first():
        raise Conflict(f"a host with URI {body.uri} is registered already")
    host = HostNode(
        id=new_id("host_node"),
        name=body.name,
        uri=body.uri,
        cpu_cores=1,
        memory_size=64,
        tunnel_ip=tunnel_address(body.tunnel_ip, body.uri),
    )
    try:
        capacity = driver_for(host).capacity()
    except HypervisorError as error:
        if body.cpu_cores is None or body.memory_size is None:
            raise BadRequest(
                f"cannot read the capacity of {body.uri} ({_first_line(error)}); "
                "check the URI, or give cpu_cores and memory_size to add it offline"
            ) from error
        host.status, host.status_reason = HostStatus.offline, _first_line(error)
    else:
        host.cpu_cores, host.memory_size, host.arch = (
            capacity.cpu_cores,
            capacity.memory_mib,
            capacity.arch,
        )
        host.status, host.last_seen_at = HostStatus.online, utcnow()
    host.cpu_cores = body.cpu_cores or host.cpu_cores
    host.memory_size = body.memory_size or host.memory_size
    session.add(host)
    session.commit()
    return host


def get_host(session: Session, host_id: str) -> HostNode:
    host = (
        session.get(HostNode, host_id)
        or session.exec(select(HostNode).where(HostNode.name == host_id)).first()
    )
    if host is None:
        raise NotFound.resource("host", host_id)
    return host


def list_hosts(
    session: Session, page: PageRequest, **filters: object
) -> tuple[list[HostNode], int]:
    return fetch_page(session, HostNode, select(HostNode), page, SORTABLE, filters)


def usage(session: Session, host_ids: list[str]) -> dict[str, tuple[int, int]]:
    """host id -> (cpu cores, MiB) held by its instances."""
    rows = session.exec(_USAGE, params={"host_ids": host_ids}).all()
    return {host_id: (int(cpu or 0), int(mem or 0)) for host_id, cpu, mem in rows if host_id}


# Built once: every launch's placement asks. Parameter: host_ids.
_USAGE = (
    select(
        Instance.host_node_id,
        sa.func.sum(Instance.cpu_cores),
        sa.func.sum(Instance.memory_size),
    )
    .where(col(Instance.host_node_id).in_(sa.bindparam("host_ids", expanding=True)))
    .where(col(Instance.state).in_(HOLDING_STATES))
    .group_by(Instance.host_node_id)
)


def public(session: Session, hosts: list[HostNode]) -> list[HostNodePublic]:
    used = usage(session, [h.id for h in hosts])
    return [
        HostNodePublic.model_validate(
            {
                **h.model_dump(),
                "cpu_cores_used": used.get(h.id, (0, 0))[0],
                "memory_size_used": used.get(h.id, (0, 0))[1],
            }
        )
        for h in hosts
    ]


def update_host(session: Session, host_id: str, body: HostNodeUpdate) -> HostNode:
    host = get_host(session, host_id)
    if body.tunnel_ip is not None:
        tunnel_address(body.tunnel_ip, host.uri)  # checked; "" clears it
    apply_changes(host, body)
    session.add(host)
    session.commit()
    return host


def delete_host(session: Session, host_id: str) -> None:
    host = get_host(session, host_id)
    in_use = session.scalar(
        select(sa.func.count())
        .select_from(Instance)
        .where(Instance.host_node_id == host.id)
        .where(col(Instance.state) != InstanceState.terminated)
    )
    if in_use:
        raise Conflict(
            f"host {host.id} still has {in_use} instance(s); terminate or move them first"
        )
    # Terminated instances keep their history but no longer point at the host.
    for instance in session.exec(select(Instance).where(Instance.host_node_id == host.id)):
        instance.host_node_id = None
        session.add(instance)
    session.delete(host)
    session.commit()


def check_host(session: Session, host: HostNode) -> bool:
    """Asks libvirt whether the host answers; records online/offline. True when online."""
    try:
        driver_for(host).capacity()
    except HypervisorError as error:
        if host.status != HostStatus.offline or host.status_reason != str(error):
            host.status, host.status_reason = HostStatus.offline, str(error)[:1024]
            session.add(host)
            session.commit()
        return False
    host.status, host.status_reason, host.last_seen_at = HostStatus.online, "", utcnow()
    session.add(host)
    session.commit()
    return True


def tunnel_address(given: str | None, uri: str) -> str:
    """The host's underlay address: as given, or the URI's host when that is an address
    (a name would need DNS, which vdc does not ask: give --tunnel-ip then)."""
    if given:
        try:
            return str(ipaddress.ip_address(given))
        except ValueError as exc:
            raise BadRequest(f"tunnel_ip {given!r} is not an IP address") from exc
    hostname = urlsplit(uri).hostname or ""
    try:
        return str(ipaddress.ip_address(hostname))
    except ValueError:
        return ""


def _first_line(error: Exception, limit: int = 200) -> str:
    """libvirt's reason, short: a connection error may quote what the other side sent."""
    lines = str(error).strip().splitlines() or [""]
    return lines[0][:limit]

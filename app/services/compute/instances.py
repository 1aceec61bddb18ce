"""Instance use cases for the API: launch, read, and ask for state changes.

The API never waits for libvirt: it validates, places the instance, allocates its MAC and
IP, records the wanted change and a job in one transaction, and answers 202. The job
worker (app/services/compute/lifecycle.py) does the libvirt work.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select

from app.config import Settings
from app.errors import BadRequest, Conflict, Forbidden, HostUnavailable, NotFound
from app.ids import new_id
from app.models import (
    Account,
    HostNode,
    Image,
    Instance,
    InstanceType,
    Network,
    NetworkInterface,
    SecurityGroup,
    SshKeyPair,
)
from app.models.common import utcnow
from app.models.host_node import HostStatus
from app.models.image import ImageKind
from app.models.instance import (
    GONE_STATES,
    ConsoleOutput,
    InstanceCreate,
    InstancePublic,
    InstanceState,
    InstanceUpdate,
    InterfacePublic,
)
from app.models.job import JobState
from app.models.volume import GIB
from app.services import access, host_uris, inserts, jobs, quotas
from app.services.compute.instance_table import SORTABLE
from app.services.hypervisors import driver_for
from app.services.listing import PageRequest
from app.services.network import addresses, filter_jobs, networks, security_groups
from app.services.network.addresses import interfaces_of
from app.services.placement import PLACEMENT_LOCK, choose_host
from app.services.state_changes import compare_and_set, mark_memberships
from app.services.storage import pools, volumes
from hypervisor.errors import HypervisorError

CONSOLE_TAIL = 64 * 1024
# action -> (states it may start from, the state it puts the instance in, the job it queues)
ACTIONS: dict[str, tuple[tuple[InstanceState, ...], InstanceState, str]] = {
    "start": ((InstanceState.stopped,), InstanceState.starting, "start"),
    "stop": ((InstanceState.running,), InstanceState.stopping, "stop"),
    "poweroff": (
        (InstanceState.running, InstanceState.stopping, InstanceState.rebooting),
        InstanceState.stopping,
        "poweroff",
    ),
    "reboot": ((InstanceState.running,), InstanceState.rebooting, "reboot"),
}


def list_instances(
    session: Session, account: Account, page: PageRequest, **filters: object
) -> tuple[list[Instance], int]:
    """One page; each row's user-data (up to 16 KiB) stays in the database, as a list shows
    only its size (see public)."""
    deferred = (defer(Instance.user_data),)  # type: ignore[arg-type] # a SQLModel column
    return access.page(session, account, Instance, page, SORTABLE, filters, deferred)


# What InstancePublic shows of the row itself; the rest comes from other tables.
_OWN_FIELDS = tuple(name for name in InstancePublic.model_fields if name in Instance.model_fields)


def public(session: Session, rows: list[Instance]) -> list[InstancePublic]:
    """The API's view of instances, in a constant number of queries whatever the number of
    rows: their interfaces, groups, user-data sizes and offline hosts, one query each."""
    ids = [r.id for r in rows]
    if not ids:
        return []
    nics = interfaces_of(session, ids)
    groups = security_groups.group_ids_of(session, ids)
    sizes = _user_data_sizes(session, ids)
    offline = _offline_hosts(session, {r.host_node_id for r in rows if r.host_node_id})
    return [_view(row, nics[row.id], groups[row.id], sizes.get(row.id, 0), offline) for row in rows]


def _view(
    row: Instance,
    own: list[NetworkInterface],
    group_ids: list[str],
    user_data_size: int,
    offline: dict[str, str],
) -> InstancePublic:
    first = own[0] if own else None
    shown = {name: getattr(row, name) for name in _OWN_FIELDS}
    if row.host_node_id in offline and row.state not in GONE_STATES and not row.state_reason:
        shown["state_reason"] = offline[row.host_node_id]
    return InstancePublic(
        **shown,
        ip_address=first.ip_address if first else None,
        mac_address=first.mac_address if first else None,
        network_id=first.network_id if first else None,
        interfaces=[InterfacePublic.model_validate(n, from_attributes=True) for n in own],
        user_data_size=user_data_size,
        security_group_ids=group_ids,
    )


def _user_data_sizes(session: Session, ids: list[str]) -> dict[str, int]:
    found = session.exec(
        select(Instance.id, sa.func.length(col(Instance.user_data)))
        .where(col(Instance.id).in_(ids))
        .where(col(Instance.user_data).is_not(None))
    )
    return {instance_id: int(size) for instance_id, size in found}


def _offline_hosts(session: Session, host_ids: set[str]) -> dict[str, str]:
    """host id -> what an instance there shows while its host is offline: its state is
    the last vdc knew, and its work waits for the host."""
    if not host_ids:
        return {}
    rows = session.exec(
        select(HostNode.id, HostNode.name)
        .where(col(HostNode.id).in_(host_ids))
        .where(HostNode.status == HostStatus.offline)
    ).all()
    return {
        host_id: f"host {name} is offline: this is its last known state, and what was asked "
        "of it waits for the host"
        for host_id, name in rows
    }


def _size(session: Session, body: InstanceCreate) -> tuple[str | None, int, int, int]:
    if body.instance_type is None:
        assert body.cpu_cores is not None and body.memory_size is not None
        return None, body.cpu_cores, body.memory_size, 0
    kind = session.get(InstanceType, body.instance_type)
    if kind is None:
        raise BadRequest(f"unknown instance type {body.instance_type!r}")
    return (
        kind.name,
        body.cpu_cores or kind.cpu_cores,
        body.memory_size or kind.memory_size,
        kind.root_disk_size,
    )


def launch_public(
    session: Session, settings: Settings, account: Account, body: InstanceCreate
) -> InstancePublic:
    """launch, answered from what it made, without reading it back (four queries that were
    a sixth of a launch's answer). Its host is online: choose_host takes no other."""
    instance, interface, groups = _launch(session, settings, account, body)
    size = len(instance.user_data or b"")
    return _view(instance, [interface], sorted(g.id for g in groups), size, {})


def launch(
    session: Session, settings: Settings, account: Account, body: InstanceCreate
) -> Instance:
    return _launch(session, settings, account, body)[0]


def _launch(
    session: Session, settings: Settings, account: Account, body: InstanceCreate
) -> tuple[Instance, NetworkInterface, list[SecurityGroup]]:
    image = volumes.usable_image(access.get(session, account, Image, body.image_id))
    network = (
        access.get(session, account, Network, body.network_id)
        if body.network_id
        else networks.default_network(session, account)
    )
    type_name, cpu_cores, memory_size, root_disk_size = _size(session, body)
    if body.root_disk_size is not None:
        root_disk_size = body.root_disk_size
    user_data = body.user_data_bytes()  # validated with the body
    ssh_key_id = (
        access.get(session, account, SshKeyPair, body.ssh_key_id).id if body.ssh_key_id else None
    )
    groups = security_groups.groups_for_launch(session, account.id, body.security_group_ids)
    disk_bytes = volumes.launch_disks_size(settings, image, root_disk_size, body.volumes)
    if body.host_node_id is not None and not account.is_admin:
        raise Forbidden("only an admin may choose an instance's host (host_node_id)")
    instance_id = new_id("instance")
    with PLACEMENT_LOCK:
        # The account's lock before the host's (choose_host), always in this order.
        quotas.check(
            session,
            settings,
            account.id,
            instances=1,
            cores=cpu_cores,
            memory_mib=memory_size,
            volume_gib=disk_bytes / GIB,
        )
        host = choose_host(session, settings, cpu_cores, memory_size, body.host_node_id)
        # What is read comes before the first write: on SQLite the first write takes the
        # database's one writer slot (app/db.py) until the commit, and the job process
        # waits for it, so the writes go last and together.
        free = addresses.free_addresses(session, network, addresses.CANDIDATES)
        # Members of groups whose rules name these groups now admit this instance's address.
        filter_jobs.refresh_groups_naming(session, [g.id for g in groups], besides=instance_id)
        instance = Instance(
            id=instance_id,
            account_id=account.id,
            display_name=body.display_name,
            hostname=body.hostname or instance_id,
            image_id=image.id,
            instance_type=type_name,
            cpu_cores=cpu_cores,
            memory_size=memory_size,
            root_disk_size=root_disk_size,
            # An installer CD boots first, until it is ejected (eject, below).
            cdrom_image_id=image.id if image.kind == ImageKind.iso else None,
            host_node_id=host.id,
            user_data=user_data,
            ssh_key_id=ssh_key_id,
            http_tokens=body.http_tokens,
            # The launch's choice, else the image's: images whose init reads the drive.
            metadata_drive=(
                image.metadata_drive if body.metadata_drive is None else body.metadata_drive
            ),
        )
        inserts.insert(session, instance)
        interface = addresses.allocate_interface(session, instance.id, network, candidates=free)
        security_groups.join(session, instance.id, groups)
        volumes.add_launch_volumes(session, settings, instance, image, body.volumes)
        jobs.enqueue(session, "launch", instance.id)
        session.commit()
    return instance, interface, groups


def request_action(
    session: Session, account: Account, instance_id: str, action: str, eject: bool = False
) -> Instance:
    """`eject` (with stop and poweroff): the CD comes out once the guest is off, so the next
    start boots the disk."""
    allowed, next_state, job_kind = ACTIONS[action]
    instance = access.get(session, account, Instance, instance_id)
    # Compare-and-set, not a read then a write: a terminate (or another action) committed
    # between the two must win, never be overwritten by this request's state.
    if not compare_and_set(session, Instance, instance.id, allowed, next_state, state_reason=""):
        session.rollback()
        current = session.get(Instance, instance.id)
        wanted = " or ".join(allowed)
        raise Conflict(
            f"cannot {action} instance {instance.id} while it is "
            f"{current.state if current else 'gone'} (it must be {wanted})"
        )
    jobs.enqueue(session, job_kind, instance.id)
    if eject and instance.cdrom_image_id is not None:
        _eject(session, instance)  # queued after the stop: it runs once the guest is off
    # Read back before the commit: the answer is the state this request set, even when a
    # worker (woken by the commit) has already moved the instance on.
    session.flush()  # the eject's change too, which a refresh would otherwise drop
    session.refresh(instance)
    session.commit()
    return instance


def eject(session: Session, account: Account, instance_id: str) -> Instance:
    """Takes the installer CD out of the drive, at once if the guest runs, so that the next
    start boots the disk it was installed onto."""
    instance = access.get(session, account, Instance, instance_id)
    if instance.state in GONE_STATES:
        raise Conflict(f"instance {instance.id} is {instance.state}")
    if instance.cdrom_image_id is None:
        image = session.get(Image, instance.image_id)
        has_drive = image is not None and image.kind == ImageKind.iso
        raise Conflict(
            f"instance {instance.id} has no CD to eject: "
            + ("it was ejected already" if has_drive else "it was not launched from an ISO")
        )
    _eject(session, instance)
    session.flush()  # as request_action: the answer is what this request set
    session.refresh(instance)
    session.commit()
    return instance


def _eject(session: Session, instance: Instance) -> None:
    """The drive is wanted empty (so every later start leaves it empty); the job empties
    the domain's, in order after the instance's earlier jobs."""
    instance.cdrom_image_id = None
    instance.updated_at = utcnow()
    session.add(instance)
    jobs.enqueue(session, "eject", instance.id)


def terminate(session: Session, account: Account, instance_id: str) -> Instance:
    """Idempotent: terminating a terminating or terminated instance changes nothing."""
    instance = access.get(session, account, Instance, instance_id)
    live = tuple(s for s in InstanceState if s not in GONE_STATES)
    if not compare_and_set(
        session, Instance, instance.id, live, InstanceState.shuttingdown, state_reason=""
    ):
        session.rollback()
        return session.get(Instance, instance.id) or instance  # already going or gone
    jobs.enqueue(session, "terminate", instance.id)
    # Instances whose rules name this one's groups stop admitting its address.
    groups = security_groups.group_ids_of(session, [instance.id])[instance.id]
    filter_jobs.refresh_groups_naming(session, groups)
    session.refresh(instance)  # as request_action: the state this request set
    session.commit()
    return instance


def update_instance(
    session: Session, account: Account, instance_id: str, body: InstanceUpdate
) -> Instance:
    instance = access.get(session, account, Instance, instance_id)
    if body.display_name is not None:
        instance.display_name = body.display_name
    if body.http_tokens is not None:
        instance.http_tokens = body.http_tokens
    user_data = body.user_data_bytes()
    if user_data is not None:
        # As EC2: a running guest may have read the old one; the next start shows the new
        # one (and rebuilds a metadata drive).
        if instance.state != InstanceState.stopped:
            raise Conflict(
                f"instance {instance.id} is {instance.state}: user-data changes only while it "
                "is stopped"
            )
        instance.user_data = user_data
    if body.security_group_ids is not None:
        if instance.state in GONE_STATES:
            raise Conflict(f"instance {instance.id} is {instance.state}")
        security_groups.set_instance_groups(session, instance, body.security_group_ids)
    instance.updated_at = utcnow()
    session.add(instance)
    session.commit()
    return instance


def force_state(session: Session, instance_id: str, state: InstanceState, reason: str) -> Instance:
    """Operator's override (vdc-manage instance force-state) for when reality and the
    database disagree; queued jobs for the instance are cancelled."""
    instance = session.get(Instance, instance_id)
    if instance is None:
        raise NotFound.resource("instance", instance_id)
    for job in jobs.pending_for(session, instance.id):
        job.state, job.last_error = JobState.failed, f"cancelled: state forced to {state}"
        session.add(job)
    _set_state(instance, state, reason or f"forced to {state} by an operator")
    session.add(instance)
    # Forced back from terminated, it is a member of its groups again (and the other way).
    mark_memberships(session, [instance.id], live=state not in GONE_STATES)
    session.commit()
    return instance


def console_output(session: Session, settings: Settings, instance: Instance) -> ConsoleOutput:
    """The serial console as logged on the instance's host (the last 64 KiB), read through
    libvirt for a host that is not vdc's own."""
    data, truncated = b"", False
    host = session.get(HostNode, instance.host_node_id) if instance.host_node_id else None
    if host is not None and instance.state != InstanceState.terminated:
        try:
            data, truncated = pools.read_console_log(
                settings, driver_for(host), instance.id, CONSOLE_TAIL
            )
        except HypervisorError as error:  # told without the host's URI or address
            raise HostUnavailable(
                f"cannot read the console from host {host.name}: "
                + host_uris.hide_host(str(error), host)
            ) from error
    return ConsoleOutput(
        instance_id=instance.id, output=data.decode("utf-8", "replace"), truncated=truncated
    )


def _set_state(instance: Instance, state: InstanceState, reason: str = "") -> None:
    instance.state = state
    instance.state_reason = reason
    instance.updated_at = utcnow()

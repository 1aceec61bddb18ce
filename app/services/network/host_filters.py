"""Security-group filters on the hosts: an instance's interfaces' nwfilters defined from the
newest rules (its launch, start, a change of its own groups), a group's members' all in one
job (`group_filters`, queued by filter_jobs.py), and an instance's removed at its terminate.

An `any` rule naming a source group matches the host's set of that group's member
addresses (hypervisor/member_sets.py): a member coming or going changes the sets, not those
filters (a tcp, udp or icmp rule from a group lists the addresses: nwfilters.py says why).

Defining a filter reads the database (rules, members' addresses), then writes to the host
(the member sets, then the filter in libvirt). Two jobs that touch one instance's filter
(a group's job and the instance's launch or terminate) could otherwise write an older
reading over a newer one, or define a filter just after the terminate removed it. Per
host, a reading and its writes hold one lock: who reads later writes later, so each filter
ends with the newest rules, and a terminated instance's is gone. (A lock of the job
process, which runs every host step, as the segments' lock in fabric.py.)"""

from __future__ import annotations

from collections.abc import Iterable

from sqlmodel import col, select

from app.models import HostNode, Instance, Job, NetworkInterface
from app.services.hypervisors import driver_for, shell_for
from app.services.jobs_context import JobContext
from app.services.network import nwfilters
from app.services.network.filter_jobs import live_members
from app.services.network.host_locks import HostLocks
from hypervisor import member_sets
from hypervisor.driver import HostDriver
from hypervisor.errors import HostUnreachable
from hypervisor.member_sets import MemberSets

CHUNK = 500  # members read and defined at a time (bound parameters per query)
_lock = HostLocks()  # a host's filters: a reading and its writes at a time


def ensure_for_instance(
    ctx: JobContext, host: HostNode, driver: HostDriver, instance_id: str
) -> dict[str, str]:
    """Defines (or updates) each interface's nwfilter, after the member sets it matches;
    interface id -> filter name."""
    with _lock(host.id):
        with ctx.session() as session:
            specs = nwfilters.filter_specs(session, instance_id)
            sets = nwfilters.member_sets(session, (spec for _, spec in specs))
        _ensure_sets(ctx, host, sets)
        for _, spec in specs:
            driver.ensure_filter(spec)
    return {nic.id: spec.name for nic, spec in specs}


def delete_for_instance(
    ctx: JobContext, host: HostNode, driver: HostDriver, interfaces: Iterable[NetworkInterface]
) -> None:
    """Removes the interfaces' filters (the domain using them is gone), then the host's
    member sets that no filter wanted there matches any more (its last member there of a
    group naming them was this one)."""
    if not driver.has_nwfilter():
        return
    with _lock(host.id):
        for nic in interfaces:
            driver.delete_filter(nwfilters.filter_name(nic))
        _collect_sets(ctx, host)


def run_group_job(ctx: JobContext, job: Job) -> None:
    """Brings the group's live members' filters up to date, host by host: the member sets
    they match first (a member came or went: the sets alone change), then the filters (the
    rules changed: libvirt redefines only a filter that differs). A host that cannot be
    reached does not hold up the others: the job is retried for it afterwards (every step
    is idempotent)."""
    group_id = job.security_group_id
    if group_id is None:
        raise ValueError(f"job {job.id}: a group_filters job without a security group")
    with ctx.session() as session:
        member_hosts = live_members(group_id).with_only_columns(col(Instance.host_node_id))
        hosts = list(session.exec(select(HostNode).where(col(HostNode.id).in_(member_hosts))))
    unreachable: HostUnreachable | None = None
    for host in sorted(hosts, key=lambda h: h.id):
        driver = driver_for(host)
        try:
            if driver.has_nwfilter():
                _rebuild_on(ctx, host, driver, group_id)
        except HostUnreachable as error:
            unreachable = unreachable or error
    if unreachable is not None:
        raise unreachable


def _rebuild_on(ctx: JobContext, host: HostNode, driver: HostDriver, group_id: str) -> None:
    with _lock(host.id):  # the members read under the lock: none terminated meanwhile
        with ctx.session() as session:
            on_host = live_members(group_id).where(Instance.host_node_id == host.id)
            members = list(session.exec(on_host.order_by(col(Instance.id))))
        for start in range(0, len(members), CHUNK):
            with ctx.session() as session:
                found = nwfilters.specs_of(session, members[start : start + CHUNK])
                specs = [spec for specs in found.values() for _, spec in specs]
                sets = nwfilters.member_sets(session, specs)
            _ensure_sets(ctx, host, sets)
            for spec in specs:
                driver.ensure_filter(spec)
        _collect_sets(ctx, host)


def _ensure_sets(ctx: JobContext, host: HostNode, sets: dict[str, list[str]]) -> None:
    if sets:
        steps = MemberSets(shell_for(ctx.settings, host))
        steps.ensure({member_sets.set_name(group): addresses for group, addresses in sets.items()})


def _collect_sets(ctx: JobContext, host: HostNode) -> None:
    """Destroys the host's member sets that no filter wanted there matches any more (a
    rule naming the group went, or the host's last instance whose groups name it). Read
    under the host's lock, so a launch's filter defined but not yet instantiated keeps its
    sets; a set still matched by a firewall rule is kept by the kernel, and the next pass
    takes it."""
    with ctx.session() as session:
        wanted = {member_sets.set_name(g) for g in nwfilters.source_groups_on(session, host.id)}
    steps = MemberSets(shell_for(ctx.settings, host))
    steps.remove(set(steps.names()) - wanted)

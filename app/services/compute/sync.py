"""The periodic sync: hosts online or offline, and what libvirt says about each instance.

It only acts on settled states (running, stopped) with no job queued, and moves them with
compare-and-set, so it never overrides a change the API asked for in the meantime.
"""

from __future__ import annotations

import logging

from sqlmodel import col, select

from app.models import HostNode, Instance, Job
from app.models.instance import InstanceState
from app.models.job import JobState
from app.services.compute.lifecycle import transition
from app.services.hosts import check_host
from app.services.hypervisors import driver_for
from app.services.jobs_context import JobContext
from app.services.storage import image_copies
from hypervisor.errors import HypervisorError

log = logging.getLogger("vdc.sync")


def sync_all(ctx: JobContext) -> None:
    with ctx.session() as session:
        hosts = list(session.exec(select(HostNode)))
        online = [host for host in hosts if check_host(session, host)]
    for host in online:
        try:
            sync_host(ctx, host)
            with ctx.session() as session:
                image_copies.remove_leftovers(session, host)  # of images deleted meanwhile
        except HypervisorError as error:
            log.warning("sync of host %s failed: %s", host.name, error)


def sync_host(ctx: JobContext, host: HostNode) -> None:
    # The database first, libvirt second: an instance that was running when we read it
    # had its domain defined before that, so the listing below cannot miss it.
    with ctx.session() as session:
        busy = set(
            session.exec(
                select(Job.instance_id).where(
                    col(Job.state).in_([JobState.queued, JobState.running])
                )
            )
        )
        instances = list(session.exec(select(Instance).where(Instance.host_node_id == host.id)))
    domains = {d.name: d for d in driver_for(host).list_domains()}
    known = {i.id: i for i in instances}
    for instance in instances:
        if instance.id in busy or instance.state not in (
            InstanceState.running,
            InstanceState.stopped,
        ):
            continue
        domain = domains.get(instance.id)
        if domain is None:
            transition(
                ctx,
                instance.id,
                (instance.state,),
                InstanceState.error,
                state_reason=f"its domain is missing on host {host.name}",
            )
        elif instance.state == InstanceState.running and domain.stopped_by_fault:
            transition(
                ctx,
                instance.id,
                (InstanceState.running,),
                InstanceState.error,
                state_reason=f"qemu stopped the guest on host {host.name} (a KVM internal "
                "error or a disk I/O error; the host's qemu log says which)",
            )
        elif instance.state == InstanceState.running and domain.state in ("shutoff", "crashed"):
            reason = (
                "the guest crashed" if domain.state == "crashed" else "the guest powered itself off"
            )
            transition(
                ctx,
                instance.id,
                (InstanceState.running,),
                InstanceState.stopped,
                state_reason=reason,
            )
        elif instance.state == InstanceState.stopped and domain.state == "running":
            transition(
                ctx,
                instance.id,
                (InstanceState.stopped,),
                InstanceState.running,
                state_reason="started outside vdc",
            )
    for name, domain in domains.items():
        owner = known.get(domain.instance_id or "")
        if domain.instance_id and (owner is None or owner.state == InstanceState.terminated):
            log.warning(
                "host %s: domain %s belongs to no live vdc instance (orphan)", host.name, name
            )

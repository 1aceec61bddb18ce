"""What the job worker does for each kind of job: the libvirt side of an instance's life.

Every step is idempotent (ensure_*, delete-if-present), so a job cut short by a crash is
simply run again from the top. State changes are compare-and-set: a job only moves an
instance out of the state it expects, never over a newer decision (a terminate, a force).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from app import metrics
from app.models import HostNode, Instance, Job, Volume
from app.models.common import utcnow
from app.models.instance import InstanceState
from app.services import host_uris, jobs
from app.services.compute import provision
from app.services.compute.provision import Loaded
from app.services.jobs_context import JobContext
from app.services.network import filter_jobs, host_filters
from app.services.state_changes import compare_and_set
from app.services.storage import volume_jobs

log = logging.getLogger("vdc.lifecycle")


def transition(
    ctx: JobContext,
    instance_id: str,
    expected: tuple[InstanceState, ...],
    new: InstanceState,
    **fields: object,
) -> bool:
    """Sets the instance's state only if it is still one of `expected`."""
    return compare_and_set(ctx.engine, Instance, instance_id, expected, new, **fields)


def run_launch(ctx: JobContext, job: Job, loaded: Loaded) -> bool:
    """True: the job is done, in the commit that made the instance `running`."""
    if not transition(
        ctx,
        loaded.instance.id,
        (InstanceState.pending, InstanceState.starting),
        InstanceState.starting,
    ):
        return False  # terminated (or forced) before the launch ran: nothing to build
    provision.ensure_running(ctx, loaded, job.id)
    launched_at = utcnow()
    # The volumes attached, the instance running and the job done: one commit.
    with ctx.session() as session:
        volume_jobs.finish_launch(session, loaded.instance.id)
        jobs.finish_in(session, job)
        ran = compare_and_set(
            session,
            Instance,
            loaded.instance.id,
            (InstanceState.starting,),
            InstanceState.running,
            launched_at=launched_at,
            state_reason="",
        )
        session.commit()
    if ran:
        metrics.launch_observed((launched_at - loaded.instance.created_at).total_seconds())
    return True


def run_start(ctx: JobContext, job: Job, loaded: Loaded) -> None:
    if loaded.instance.state != InstanceState.starting:
        return
    provision.ensure_running(ctx, loaded, job.id)
    transition(
        ctx, loaded.instance.id, (InstanceState.starting,), InstanceState.running, state_reason=""
    )


def run_stop(ctx: JobContext, job: Job, loaded: Loaded) -> None:
    """ACPI shutdown; forced off if the guest has not stopped within the stop timeout."""
    if loaded.instance.state != InstanceState.stopping:
        return
    guest = loaded.driver.find_guest(loaded.instance.id)
    reason = ""
    if guest is not None and guest.is_running():
        guest.shutdown()
        deadline = time.monotonic() + ctx.settings.stop_timeout
        while guest.is_running() and time.monotonic() < deadline:
            time.sleep(0.5)
        if guest.is_running():
            guest.poweroff()
            reason = (
                f"forced off: the guest did not shut down within {ctx.settings.stop_timeout:g}s"
            )
    transition(
        ctx,
        loaded.instance.id,
        (InstanceState.stopping,),
        InstanceState.stopped,
        state_reason=reason,
    )


def run_poweroff(ctx: JobContext, job: Job, loaded: Loaded) -> None:
    if loaded.instance.state != InstanceState.stopping:
        return
    guest = loaded.driver.find_guest(loaded.instance.id)
    if guest is not None:
        guest.poweroff()
    transition(
        ctx, loaded.instance.id, (InstanceState.stopping,), InstanceState.stopped, state_reason=""
    )


def run_reboot(ctx: JobContext, job: Job, loaded: Loaded) -> None:
    if loaded.instance.state != InstanceState.rebooting:
        return
    guest = loaded.driver.find_guest(loaded.instance.id)
    if guest is not None and guest.is_running():
        guest.reboot()
    else:
        # It was off after all: a reboot ends with it running.
        provision.ensure_running(ctx, loaded, job.id)
    transition(
        ctx, loaded.instance.id, (InstanceState.rebooting,), InstanceState.running, state_reason=""
    )


def run_eject(ctx: JobContext, job: Job, loaded: Loaded) -> None:
    """The CD out of the drive (asked for on its own, or after a stop): the instance's row
    says so already; the domain follows, live if it runs."""
    if loaded.instance.state in (InstanceState.shuttingdown, InstanceState.terminated):
        return
    provision.eject(ctx, loaded)


def run_filters(ctx: JobContext, job: Job, loaded: Loaded) -> None:
    """Security groups changed: the interfaces' filters follow (a running guest gets the
    new rules at once; a stopped one at its next start)."""
    if (
        loaded.instance.state in (InstanceState.shuttingdown, InstanceState.terminated)
        or loaded.host is None
    ):
        return
    provision.ensure_filters(ctx, loaded)


def run_terminate(ctx: JobContext, job: Job, loaded: Loaded) -> None:
    """Removes everything the instance had on its host (provision.tear_down)."""
    if loaded.instance.state == InstanceState.terminated:
        return
    provision.tear_down(ctx, loaded)
    transition(
        ctx,
        loaded.instance.id,
        tuple(s for s in InstanceState if s != InstanceState.terminated),
        InstanceState.terminated,
        terminated_at=utcnow(),
        state_reason="",
    )


# A handler that closes its job in its own last commit says so (True); else the worker does.
HANDLERS: dict[str, Callable[[JobContext, Job, Loaded], bool | None]] = {
    "launch": run_launch,
    "start": run_start,
    "stop": run_stop,
    "poweroff": run_poweroff,
    "reboot": run_reboot,
    "terminate": run_terminate,
    "filters": run_filters,
    "eject": run_eject,
}


def run(ctx: JobContext, job: Job) -> bool:
    """Runs the job; True when it closed the job itself (see HANDLERS)."""
    if job.kind in volume_jobs.HANDLERS:
        volume_jobs.run(ctx, job)
        return False
    if job.kind == filter_jobs.GROUP_FILTERS:
        host_filters.run_group_job(ctx, job)
        return False
    if job.instance_id is None or job.kind not in HANDLERS:
        raise ValueError(f"job {job.id}: unknown kind {job.kind!r}")
    loaded = provision.load(ctx, job.instance_id)
    if loaded is None:
        log.warning("job %s: instance %s no longer exists", job.id, job.instance_id)
        return False
    return bool(HANDLERS[job.kind](ctx, job, loaded))


def fail(ctx: JobContext, job: Job, reason: str) -> None:
    """A job that failed for good: its volume, or its instance, goes to `error`. The reason
    is the tenant's to read, so it names the host, never its URI or address (the job row
    and the server log keep libvirt's own words for the operator)."""
    reason = host_uris.hide_host(reason, _host_of(ctx, job))
    if job.volume_id is not None:
        volume_jobs.fail_volume(ctx, job.volume_id, reason)
    elif job.instance_id is not None:
        # The volumes first: whoever sees the instance in `error` (a user polling it, the
        # web UI) must find its volumes already there too, never still `attaching`.
        if job.kind == "launch":
            volume_jobs.fail_launch(ctx, job.instance_id, reason)
        fail_instance(ctx, job.instance_id, reason)


def _host_of(ctx: JobContext, job: Job) -> HostNode | None:
    with ctx.session() as session:
        owner = (
            session.get(Volume, job.volume_id)
            if job.volume_id
            else session.get(Instance, job.instance_id)
            if job.instance_id
            else None
        )
        if owner is None or owner.host_node_id is None:
            return None
        return session.get(HostNode, owner.host_node_id)


def fail_instance(ctx: JobContext, instance_id: str, reason: str) -> None:
    """Ends a failed job's instance in `error` with a reason (never stuck in a transition)."""
    transition(
        ctx,
        instance_id,
        tuple(s for s in InstanceState if s not in (InstanceState.terminated,)),
        InstanceState.error,
        state_reason=reason[:2048],
    )

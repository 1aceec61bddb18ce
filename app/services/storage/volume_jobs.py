"""What the job worker does for volumes: create, delete, attach and detach on the host.

Like the instance jobs (app/services/compute/lifecycle.py), every step is idempotent and every
state change compare-and-set, so a job cut short by a crash simply runs again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import sqlalchemy as sa
from sqlmodel import Session, col, select

from app.models import HostNode, Image, Instance, Job, Volume
from app.models.common import utcnow
from app.models.instance import InstanceState
from app.models.volume import VolumeState
from app.services.hypervisors import driver_for
from app.services.jobs_context import JobContext
from app.services.state_changes import compare_and_set
from app.services.storage import image_copies, pools

log = logging.getLogger("vdc.volumes")


def transition(
    ctx: JobContext,
    volume_id: str,
    expected: tuple[VolumeState, ...],
    new: VolumeState,
    **fields: object,
) -> bool:
    """Sets the volume's state (and clears its reason, unless given) only if it is still
    one of `expected`."""
    return compare_and_set(
        ctx.engine, Volume, volume_id, expected, new, **{"state_reason": "", **fields}
    )


def touch_instance(ctx: JobContext, instance_id: str) -> None:
    """Marks the instance changed: the metadata service rebuilds its block-device-mapping."""
    with ctx.engine.begin() as connection:
        connection.execute(
            sa.update(Instance).where(col(Instance.id) == instance_id).values(updated_at=utcnow())
        )


def _host_and_image(ctx: JobContext, volume: Volume) -> tuple[HostNode, Image | None]:
    with ctx.session() as session:
        host = session.get(HostNode, volume.host_node_id) if volume.host_node_id else None
        image = session.get(Image, volume.image_id) if volume.image_id else None
    if host is None:
        raise RuntimeError(f"volume {volume.id} has no host")
    return host, image


def ensure_on_host(ctx: JobContext, volume: Volume) -> str:
    host, image = _host_and_image(ctx, volume)
    # A volume made from an image is an overlay on the host's copy of it.
    image_path = image_copies.ensure_copy(ctx, host, image, owner=volume.id) if image else None
    return pools.ensure_on_host(ctx.settings, driver_for(host), volume, image, image_path)


def run_create(ctx: JobContext, job: Job, volume: Volume) -> None:
    if volume.state != VolumeState.creating:
        return
    ensure_on_host(ctx, volume)
    transition(ctx, volume.id, (VolumeState.creating,), VolumeState.available)


def run_delete(ctx: JobContext, job: Job, volume: Volume) -> None:
    if volume.state != VolumeState.deleting:
        return
    host, _ = _host_and_image(ctx, volume)
    pools.delete_from_host(driver_for(host), volume)
    transition(ctx, volume.id, (VolumeState.deleting,), VolumeState.deleted, deleted_at=utcnow())


def run_attach(ctx: JobContext, job: Job, volume: Volume) -> None:
    """Live and persistent on a running guest, persistent only on a stopped one."""
    if volume.state != VolumeState.attaching or volume.instance_id is None:
        return
    with ctx.session() as session:
        instance = session.get(Instance, volume.instance_id)
    assert instance is not None
    if instance.state in (
        InstanceState.shuttingdown,
        InstanceState.terminated,
        InstanceState.error,
    ):
        transition(
            ctx,
            volume.id,
            (VolumeState.attaching,),
            VolumeState.available,
            instance_id=None,
            device=None,
            state_reason=f"not attached: instance {instance.id} became {instance.state} first",
        )
        return
    path = ensure_on_host(ctx, volume)
    host, _ = _host_and_image(ctx, volume)
    driver = driver_for(host)
    if driver.find_guest(instance.id) is not None:
        driver.attach_disk(instance.id, pools.disk_spec(volume, path))
    # else the domain is not defined yet: the next start defines it with the volume
    transition(ctx, volume.id, (VolumeState.attaching,), VolumeState.attached, attached_at=utcnow())
    touch_instance(ctx, instance.id)


def run_detach(ctx: JobContext, job: Job, volume: Volume) -> None:
    """Waits for a running guest to release the disk; `error` if it does not in time."""
    if volume.state != VolumeState.detaching or volume.instance_id is None:
        return
    host, _ = _host_and_image(ctx, volume)
    timeout = ctx.settings.detach_timeout
    if not driver_for(host).detach_disk(volume.instance_id, volume.id, timeout):
        transition(
            ctx,
            volume.id,
            (VolumeState.detaching,),
            VolumeState.error,
            state_reason=(
                f"the guest did not release {volume.device} within {timeout:g}s, so it is "
                f"still attached to {volume.instance_id}; detach again, or stop the "
                "instance and detach"
            ),
        )
        return
    transition(
        ctx,
        volume.id,
        (VolumeState.detaching,),
        VolumeState.available,
        instance_id=None,
        device=None,
        attached_at=None,
    )
    touch_instance(ctx, volume.instance_id)


HANDLERS: dict[str, Callable[[JobContext, Job, Volume], None]] = {
    "volume_create": run_create,
    "volume_delete": run_delete,
    "attach": run_attach,
    "detach": run_detach,
}


def run(ctx: JobContext, job: Job) -> None:
    with ctx.session() as session:
        volume = session.get(Volume, job.volume_id)
    if volume is None:
        log.warning("job %s: volume %s no longer exists", job.id, job.volume_id)
        return
    HANDLERS[job.kind](ctx, job, volume)


def fail_volume(ctx: JobContext, volume_id: str, reason: str) -> None:
    """A failed volume job leaves its volume in `error` with the reason, never half-way."""
    transition(
        ctx,
        volume_id,
        tuple(s for s in VolumeState if s not in (VolumeState.deleted,)),
        VolumeState.error,
        state_reason=reason[:2048],
    )


# --- for the instance jobs ----------------------------------------------------------------


def data_volumes_of(ctx: JobContext, instance_id: str) -> list[Volume]:
    """The volumes (root excluded) an instance's domain should have."""
    with ctx.session() as session:
        return list(session.exec(_DATA_VOLUMES, params={"instance_id": instance_id}))


# Built once: every launch asks. Parameter: instance_id.
_DATA_VOLUMES = (
    select(Volume)
    .where(col(Volume.instance_id) == sa.bindparam("instance_id"))
    .where(col(Volume.boot).is_(False))
    .where(col(Volume.state).not_in((VolumeState.deleting, VolumeState.deleted)))
    .order_by(col(Volume.device))
)


def finish_launch(session: Session, instance_id: str) -> None:
    """The launch built the root disk and the launch volumes into the domain (in the
    caller's transaction, the one that makes the instance `running`). A core UPDATE on the
    session's connection: the ORM's would look for the volumes among the session's objects
    to update them too, and the caller holds none."""
    session.connection().execute(_FINISH_LAUNCH, {"of_instance": instance_id, "now": utcnow()})


_volumes = Volume.__table__  # type: ignore[attr-defined]
_FINISH_LAUNCH = (  # built once: every launch ends with it
    sa.update(_volumes)
    .where(_volumes.c.instance_id == sa.bindparam("of_instance"))
    .where(_volumes.c.state == VolumeState.attaching)
    .values(
        state=VolumeState.attached,
        attached_at=sa.bindparam("now", type_=_volumes.c.attached_at.type),
        updated_at=sa.bindparam("now", type_=_volumes.c.updated_at.type),
    )
)


def fail_launch(ctx: JobContext, instance_id: str, reason: str) -> None:
    with ctx.engine.begin() as connection:
        connection.execute(
            sa.update(Volume)
            .where(col(Volume.instance_id) == instance_id)
            .where(col(Volume.state) == VolumeState.attaching)
            .values(state=VolumeState.error, state_reason=reason[:2048], updated_at=utcnow())
        )


def release_on_terminate(ctx: JobContext, host: HostNode | None, instance_id: str) -> None:
    """After the domain is gone: the root disk is deleted; each other volume is deleted if
    it asked for that (delete_on_termination), else kept `available` for reuse."""
    with ctx.session() as session:
        volumes = list(session.exec(select(Volume).where(Volume.instance_id == instance_id)))
    driver = driver_for(host) if host is not None else None
    for volume in volumes:
        if volume.state == VolumeState.deleted:
            continue
        if volume.boot or volume.delete_on_termination:
            if driver is not None:
                pools.delete_from_host(driver, volume)
            kept = {} if volume.boot else {"instance_id": None, "device": None}
            transition(
                ctx,
                volume.id,
                tuple(VolumeState),
                VolumeState.deleted,
                deleted_at=utcnow(),
                attached_at=None,
                **kept,
            )
        else:
            transition(
                ctx,
                volume.id,
                tuple(s for s in VolumeState if s != VolumeState.deleted),
                VolumeState.available,
                instance_id=None,
                device=None,
                attached_at=None,
            )

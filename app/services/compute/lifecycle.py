"""What the job worker does for each kind of job: the libvirt side of an instance's life.

Every step is idempotent (ensure_*, delete-if-present), so a job cut short by a crash is
simply run again from the top. State changes are compare-and-set: a job only moves an
instance out of the state it expects, never over a newer decision (a terminate, a force).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import col

from app.config import split_bind
from app.models import HostNode, Image, Instance, Job, Network, NetworkInterface, Volume
from app.models.common import utcnow
from app.models.instance import InstanceState
from app.models.lookups import interfaces_with_networks
from app.services import host_uris
from app.services.compute.instances import console_log_path
from app.services.hypervisors import driver_for
from app.services.jobs_context import JobContext
from app.services.network import nwfilters
from app.services.network.networks import libvirt_name, spec_for
from app.services.state_changes import compare_and_set
from app.services.storage import pools, volume_jobs
from app.services.storage.pools import INSTANCE_POOL, root_volume_name
from hypervisor.driver import HostDriver
from hypervisor.specs import DhcpHost, DiskSpec, DomainSpec, InterfaceSpec, VolumeSpec

log = logging.getLogger("vdc.lifecycle")
ARCH = {"x86_64": "x86_64", "x86": "i686", "i686": "i686", "aarch64": "aarch64"}


def transition(
    ctx: JobContext,
    instance_id: str,
    expected: tuple[InstanceState, ...],
    new: InstanceState,
    **fields: object,
) -> bool:
    """Sets the instance's state only if it is still one of `expected`."""
    return compare_and_set(ctx.engine, Instance, instance_id, expected, new, **fields)


@dataclass
class Loaded:
    instance: Instance
    host: HostNode | None
    image: Image
    interfaces: list[tuple[NetworkInterface, Network]]

    @property
    def driver(self) -> HostDriver:
        assert self.host is not None, "instance has no host"
        return driver_for(self.host)


def load(ctx: JobContext, instance_id: str) -> Loaded | None:
    with ctx.session() as session:
        instance = session.get(Instance, instance_id)
        if instance is None:
            return None
        host = session.get(HostNode, instance.host_node_id) if instance.host_node_id else None
        image = session.get(Image, instance.image_id)
        assert image is not None
        return Loaded(instance, host, image, interfaces_with_networks(session, instance_id))


def ensure_filters(ctx: JobContext, loaded: Loaded) -> dict[str, str]:
    """Defines (or updates) each interface's nwfilter; interface id -> filter name."""
    with ctx.session() as session:
        specs = nwfilters.filter_specs(session, loaded.instance.id)
    for _, spec in specs:
        loaded.driver.ensure_filter(spec)
    return {nic.id: spec.name for nic, spec in specs}


def ensure_running(ctx: JobContext, loaded: Loaded) -> None:
    """Everything an instance needs on its host, created where missing, then powered on."""
    settings, instance, driver = ctx.settings, loaded.instance, loaded.driver
    metadata_port = split_bind(settings.metadata_bind)[1]
    filter_names = ensure_filters(ctx, loaded)
    for nic, network in loaded.interfaces:
        driver.ensure_network(spec_for(network))
        driver.ensure_metadata_redirect(spec_for(network), metadata_port)
        driver.add_dhcp_host(
            libvirt_name(network), DhcpHost(nic.mac_address, nic.ip_address, instance.hostname)
        )
    driver.ensure_pool(pools.pool_spec(settings, INSTANCE_POOL))
    image = loaded.image
    disk_path = driver.ensure_volume(
        INSTANCE_POOL,
        VolumeSpec(
            name=root_volume_name(instance.id),
            capacity_bytes=max(image.virtual_size, instance.root_disk_size * 1024**3),
            backing_path=str(settings.image_dir / image.file_name),
            backing_format=image.format,
        ),
    )
    interfaces = tuple(
        InterfaceSpec(
            mac=nic.mac_address,
            network=libvirt_name(network),
            filter=filter_names.get(nic.id),
            ip=nic.ip_address,
        )
        for nic, network in loaded.interfaces
    )
    data_disks = [
        pools.disk_spec(volume, volume_jobs.ensure_on_host(ctx, volume))
        for volume in volume_jobs.data_volumes_of(ctx, instance.id)
    ]
    settings.console_dir.mkdir(parents=True, exist_ok=True)
    guest = driver.ensure_domain(
        DomainSpec(
            name=instance.id,
            virt_type=driver.virt_type(settings.virt_type),
            arch=ARCH.get(image.arch, image.arch),
            vcpus=instance.cpu_cores,
            memory_mib=instance.memory_size,
            instance_id=instance.id,
            account_id=instance.account_id,
            disks=(DiskSpec(path=disk_path, format="qcow2", target="vda"), *data_disks),
            interfaces=interfaces,
            console_log=str(console_log_path(settings, instance.id)),
        )
    )
    # A domain defined earlier gets the volumes attached since (e.g. while it was off), and
    # the filters of security groups (domains made before vdc had them).
    driver.ensure_persistent_disks(instance.id, data_disks)
    driver.ensure_persistent_filters(instance.id, list(interfaces))
    guest.start()


def run_launch(ctx: JobContext, job: Job, loaded: Loaded) -> None:
    if not transition(
        ctx,
        loaded.instance.id,
        (InstanceState.pending, InstanceState.starting),
        InstanceState.starting,
    ):
        return  # terminated (or forced) before the launch ran: nothing to build
    ensure_running(ctx, loaded)
    volume_jobs.finish_launch(ctx, loaded.instance.id)
    transition(
        ctx,
        loaded.instance.id,
        (InstanceState.starting,),
        InstanceState.running,
        launched_at=utcnow(),
        state_reason="",
    )


def run_start(ctx: JobContext, job: Job, loaded: Loaded) -> None:
    if loaded.instance.state != InstanceState.starting:
        return
    ensure_running(ctx, loaded)
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
        ensure_running(ctx, loaded)  # it was off after all: a reboot ends with it running
    transition(
        ctx, loaded.instance.id, (InstanceState.rebooting,), InstanceState.running, state_reason=""
    )


def run_filters(ctx: JobContext, job: Job, loaded: Loaded) -> None:
    """Security groups changed: the interfaces' filters follow (a running guest gets the
    new rules at once; a stopped one at its next start)."""
    if (
        loaded.instance.state in (InstanceState.shuttingdown, InstanceState.terminated)
        or loaded.host is None
    ):
        return
    ensure_filters(ctx, loaded)


def run_terminate(ctx: JobContext, job: Job, loaded: Loaded) -> None:
    """Removes the domain, its disk, its DHCP entries and leases, and its console log."""
    instance = loaded.instance
    if instance.state == InstanceState.terminated:
        return
    if loaded.host is not None:
        driver = loaded.driver
        driver.undefine(instance.id)
        driver.delete_volume(INSTANCE_POOL, root_volume_name(instance.id))
        for nic, network in loaded.interfaces:
            driver.delete_filter(nwfilters.filter_name(nic))  # the domain using it is gone
            driver.remove_dhcp_host(libvirt_name(network), nic.mac_address)
            driver.release_dhcp_lease(
                libvirt_name(network), DhcpHost(nic.mac_address, nic.ip_address)
            )
    volume_jobs.release_on_terminate(ctx, loaded.host, instance.id)
    with ctx.session() as session:
        for nic, _ in loaded.interfaces:
            session.exec(sa.delete(NetworkInterface).where(col(NetworkInterface.id) == nic.id))
        session.commit()
    console_log_path(ctx.settings, instance.id).unlink(missing_ok=True)
    transition(
        ctx,
        instance.id,
        tuple(s for s in InstanceState if s != InstanceState.terminated),
        InstanceState.terminated,
        terminated_at=utcnow(),
        state_reason="",
    )


HANDLERS: dict[str, Callable[[JobContext, Job, Loaded], None]] = {
    "launch": run_launch,
    "start": run_start,
    "stop": run_stop,
    "poweroff": run_poweroff,
    "reboot": run_reboot,
    "terminate": run_terminate,
    "filters": run_filters,
}


def run(ctx: JobContext, job: Job) -> None:
    if job.kind in volume_jobs.HANDLERS:
        volume_jobs.run(ctx, job)
        return
    if job.instance_id is None or job.kind not in HANDLERS:
        raise ValueError(f"job {job.id}: unknown kind {job.kind!r}")
    loaded = load(ctx, job.instance_id)
    if loaded is None:
        log.warning("job %s: instance %s no longer exists", job.id, job.instance_id)
        return
    HANDLERS[job.kind](ctx, job, loaded)


def fail(ctx: JobContext, job: Job, reason: str) -> None:
    """A job that failed for good: its volume, or its instance, goes to `error`. The reason
    is the tenant's to read, so it names the host, never its URI or address (the job row
    and the server log keep libvirt's own words for the operator)."""
    reason = host_uris.hide_host(reason, _host_of(ctx, job))
    if job.volume_id is not None:
        volume_jobs.fail_volume(ctx, job.volume_id, reason)
    elif job.instance_id is not None:
        fail_instance(ctx, job.instance_id, reason)
        if job.kind == "launch":
            volume_jobs.fail_launch(ctx, job.instance_id, reason)


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

"""What an instance needs on its host, made there (ensure_running) and taken away again
(tear_down), for a guest on any host: its filters, its network segment and DHCP entry,
the host's copy of its image, its disks, its console log and its domain.

Every step is idempotent (ensure_*, delete-if-present), so a job cut short by a crash is
simply run again from the top.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import col, select

from app.models import HostNode, Image, Instance, Network, NetworkInterface
from app.models.image import ImageKind
from app.models.lookups import interfaces_with_networks
from app.models.volume import GIB
from app.services.compute import display, metadata_drive
from app.services.hypervisors import driver_for
from app.services.jobs_context import JobContext
from app.services.network import fabric, host_filters, nwfilters
from app.services.storage import image_copies, pools, volume_jobs
from app.services.storage.pools import CONSOLE_POOL, INSTANCE_POOL, root_volume_name
from hypervisor.driver import HostDriver
from hypervisor.specs import (
    CdromSpec,
    DhcpHost,
    DiskSpec,
    DomainSpec,
    InterfaceSpec,
    VolumeSpec,
)

ARCH = {"x86_64": "x86_64", "x86": "i686", "i686": "i686", "aarch64": "aarch64"}


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


# Built once (every job starts here). Parameter: instance_id.
_LOAD = (
    select(Instance, HostNode, Image)
    .join(Image, col(Image.id) == Instance.image_id, isouter=True)
    .join(HostNode, col(HostNode.id) == Instance.host_node_id, isouter=True)
    .where(col(Instance.id) == sa.bindparam("instance_id"))
)


def load(ctx: JobContext, instance_id: str) -> Loaded | None:
    with ctx.session() as session:
        # One query for the three rows (every job starts here).
        found = session.exec(_LOAD, params={"instance_id": instance_id}).first()
        if found is None:
            return None
        instance, host, image = found
        if image is None:  # deleted once the instance was terminated: nothing left to do
            return None
        return Loaded(instance, host, image, interfaces_with_networks(session, instance_id))


def ensure_filters(ctx: JobContext, loaded: Loaded) -> dict[str, str]:
    """Defines (or updates) each interface's nwfilter; interface id -> filter name."""
    if not loaded.driver.has_nwfilter():  # libvirt's test driver: nothing to define
        return {nic.id: nwfilters.filter_name(nic) for nic, _ in loaded.interfaces}
    assert loaded.host is not None
    return host_filters.ensure_for_instance(ctx, loaded.host, loaded.driver, loaded.instance.id)


def ensure_running(ctx: JobContext, loaded: Loaded, owner: str) -> None:
    """Everything an instance needs on its host, created where missing, then powered on.
    `owner` names the job, which may hold the upload of the image to the host."""
    settings, instance, driver = ctx.settings, loaded.instance, loaded.driver
    assert loaded.host is not None
    filter_names = ensure_filters(ctx, loaded)
    interfaces = []
    for nic, network in loaded.interfaces:
        wanted = InterfaceSpec(
            mac=nic.mac_address, filter=filter_names.get(nic.id), ip=nic.ip_address
        )
        entry = DhcpHost(nic.mac_address, nic.ip_address, instance.hostname)
        interfaces.append(fabric.attach(ctx, network, loaded.host, wanted, entry))
    image = loaded.image
    cdrom = ensure_cdrom_medium(ctx, loaded, owner)
    driver.ensure_pool(pools.pool_spec(settings, INSTANCE_POOL))
    disk_path = driver.ensure_volume(INSTANCE_POOL, _root_disk(ctx, loaded, owner))
    # Whether it has a drive is fixed at its launch: most instances have none to look for.
    drive = (
        metadata_drive.ensure_drive(ctx, instance.id, driver) if instance.metadata_drive else None
    )
    data_disks = [
        *([drive] if drive is not None else []),  # vdb, before the volumes (vdc, ...)
        *(
            pools.disk_spec(volume, volume_jobs.ensure_on_host(ctx, volume))
            for volume in volume_jobs.data_volumes_of(ctx, instance.id)
        ),
    ]
    driver.ensure_pool(pools.pool_spec(settings, CONSOLE_POOL))  # virtlogd writes the log there
    screen = display.new_display(loaded.host)
    guest = driver.ensure_domain(
        DomainSpec(
            name=instance.id,
            virt_type=virt_type(ctx, loaded.host, driver),
            arch=ARCH.get(image.arch, image.arch),
            vcpus=instance.cpu_cores,
            memory_mib=instance.memory_size,
            instance_id=instance.id,
            account_id=instance.account_id,
            disks=(DiskSpec(path=disk_path, format="qcow2", target="vda"), *data_disks),
            interfaces=tuple(interfaces),
            console_log=pools.console_log(settings, instance.id),
            display=screen,
            cdrom=cdrom,
        )
    )
    if not guest.defined_now:
        # A domain defined earlier gets the volumes attached since (e.g. while it was off),
        # the filters of security groups and a screen (domains made before vdc had them); its
        # CD what the instance wants now (ejected while a job to do so could not run). One
        # defined just now has them from the spec: reading it back three times was 5-6 %
        # of a launch's job process.
        driver.ensure_persistent_disks(instance.id, data_disks)
        driver.ensure_persistent_filters(instance.id, interfaces)
        driver.ensure_persistent_display(instance.id, screen)
        if cdrom is not None:
            driver.ensure_cdrom(instance.id, cdrom)
    guest.start()


def _root_disk(ctx: JobContext, loaded: Loaded, owner: str) -> VolumeSpec:
    """An overlay on the host's copy of the image, grown to the size asked for; from an
    installer ISO, a blank disk of the size asked for (the ISO is the CD)."""
    instance, image = loaded.instance, loaded.image
    name = root_volume_name(instance.id)
    if image.kind == ImageKind.iso:
        return VolumeSpec(name=name, capacity_bytes=instance.root_disk_size * GIB)
    assert loaded.host is not None
    return VolumeSpec(
        name=name,
        capacity_bytes=max(image.virtual_size, instance.root_disk_size * GIB),
        backing_path=image_copies.ensure_copy(ctx, loaded.host, image, owner),
        backing_format=image.format,
    )


def ensure_cdrom_medium(ctx: JobContext, loaded: Loaded, owner: str) -> CdromSpec | None:
    """The CD-ROM drive an instance launched from an ISO has: the ISO (copied to its host,
    as images are) until it is ejected, then empty. Other instances have no drive."""
    if loaded.image.kind != ImageKind.iso:
        return None
    if loaded.instance.cdrom_image_id is None:
        return CdromSpec(path=None)
    assert loaded.host is not None
    return CdromSpec(path=image_copies.ensure_copy(ctx, loaded.host, loaded.image, owner))


def eject(ctx: JobContext, loaded: Loaded) -> None:
    """Empties the drive of a defined domain (running or not); the next start would too."""
    if loaded.host is None or loaded.instance.cdrom_image_id is not None:
        return
    if loaded.driver.find_guest(loaded.instance.id) is not None:
        loaded.driver.ensure_cdrom(loaded.instance.id, CdromSpec(path=None))


def virt_type(ctx: JobContext, host: HostNode, driver: HostDriver) -> str:
    """kvm or qemu as VDC_VIRT_TYPE says; with `auto`, what booting a probe guest on the host
    found (hosts probed before vdc did that: what libvirt reports)."""
    if driver.is_test():
        return "test"
    if ctx.settings.virt_type != "auto":
        return ctx.settings.virt_type
    return host.virt_type or driver.virt_type("auto")


def tear_down(ctx: JobContext, loaded: Loaded) -> None:
    """Removes the domain, its root disk and metadata drive, its filters, DHCP entries and
    leases, and its console log; then the interfaces' rows, and the host's segments no
    guest uses now."""
    instance = loaded.instance
    if loaded.host is not None:
        driver = loaded.driver
        driver.undefine(instance.id)
        driver.delete_volume(INSTANCE_POOL, root_volume_name(instance.id))
        metadata_drive.remove(ctx.settings, driver, instance.id)
        pools.delete_console_log(ctx.settings, driver, instance.id)
        nics = (n for n, _ in loaded.interfaces)
        host_filters.delete_for_instance(ctx, loaded.host, driver, nics)
        for nic, network in loaded.interfaces:
            entry = DhcpHost(nic.mac_address, nic.ip_address)
            fabric.remove_dhcp_entry(ctx, network, loaded.host, entry)
    else:
        metadata_drive.remove(ctx.settings, None, instance.id)  # built, never placed
    volume_jobs.release_on_terminate(ctx, loaded.host, instance.id)
    with ctx.session() as session:
        for nic, _ in loaded.interfaces:
            session.exec(sa.delete(NetworkInterface).where(col(NetworkInterface.id) == nic.id))
        session.commit()
    if loaded.host is not None:
        for network in {network.id: network for _, network in loaded.interfaces}.values():
            fabric.detach(ctx, network, loaded.host)

"""Named, idempotent operations on one host; the only code that sends XML to libvirt.

Every step can be repeated safely (a job that died halfway runs again from the top):
ensure_* creates what is missing and leaves what exists; remove/delete of something
already gone is not an error. The network steps are in hypervisor/host_networks.py, what
all steps share in hypervisor/host.py.
"""

from __future__ import annotations

import time

import libvirt

from hypervisor import designer
from hypervisor.errors import NotFoundOnHost, absent_if_missing, translated
from hypervisor.guest import Guest, lookup
from hypervisor.host import define_once, start_once
from hypervisor.host_networks import NetworkSteps
from hypervisor.kvm_probe import KvmProbeSteps
from hypervisor.specs import (
    CdromSpec,
    DiskSpec,
    DisplayEndpoint,
    DisplaySpec,
    DomainInfo,
    DomainSpec,
    FilterSpec,
    InterfaceSpec,
    PoolSpec,
    VolumeSpec,
)
from hypervisor.streams import StreamSteps
from hypervisor.xml import NwFilter, StorageVolume


class HostDriver(NetworkSteps, StreamSteps, KvmProbeSteps):
    # --- storage -------------------------------------------------------------------------

    @translated
    def ensure_pool(self, spec: PoolSpec) -> None:
        """Defines, builds, starts and autostarts the pool where needed; once made sure of,
        it is not asked about again on this connection (until forget_facts)."""
        if self._known(spec):
            return
        connection = self._conn()

        def define() -> libvirt.virStoragePool:
            pool = connection.storagePoolDefineXML(designer.pool(spec).to_xml())
            try:
                pool.build(0)  # makes the folder
            except libvirt.libvirtError:
                if not pool.isActive():  # a racing job built and started it: fine
                    raise
            return pool

        pool = define_once(
            lambda: connection.storagePoolLookupByName(spec.name),
            define,
            libvirt.VIR_ERR_NO_STORAGE_POOL,
        )
        start_once(pool)
        if not pool.autostart():
            pool.setAutostart(1)
        self._learn(spec)

    @translated
    def ensure_volume(self, pool_name: str, spec: VolumeSpec) -> str:
        """Creates the qcow2 volume (blank, or an overlay on an image) unless it exists; returns
        its path."""
        pool = self._conn().storagePoolLookupByName(pool_name)
        existing = self._volume(pool_name, spec.name)
        if existing is not None:
            return str(existing.path())
        try:
            return str(pool.createXML(designer.volume(spec).to_xml(), 0).path())
        except libvirt.libvirtError as error:
            if "exists" not in (error.get_error_message() or ""):
                raise
        # The file is there (a crashed run made it) but the pool has not seen it yet. A
        # refresh is refused while other volumes are being created, so wait for a gap.
        for _ in range(50):
            if _refresh(pool):
                break
            time.sleep(0.1)
        return str(pool.storageVolLookupByName(spec.name).path())

    @translated
    def list_volumes(self, pool_name: str) -> list[str]:
        """Names of the volumes in a pool, files put there behind libvirt's back included;
        [] when the pool does not exist."""
        pool = self._storage_pool(pool_name)
        if pool is None:
            return []

        def names() -> list[str]:
            if not pool.isActive():
                return []
            _refresh(pool)  # when busy creating a volume, list what it knows
            return sorted(pool.listVolumes())

        # A pool removed between the lookup and the listing is simply not there.
        return absent_if_missing(names, libvirt.VIR_ERR_NO_STORAGE_POOL) or []

    @translated
    def copy_volume_flat(self, pool_name: str, source_name: str, name: str) -> str:
        """A standalone qcow2 copy of a volume in the same pool (its backing chain merged in:
        libvirt runs `qemu-img convert` on the host); returns its path. A leftover of that
        name (a copy cut short) is replaced. Raises if the copy still has a backing file."""
        pool = self._conn().storagePoolLookupByName(pool_name)
        source = pool.storageVolLookupByName(source_name)
        leftover = self._volume(pool_name, name)
        if leftover is not None:
            leftover.delete(0)
        capacity = int(source.info()[1])
        wanted = designer.volume(VolumeSpec(name=name, capacity_bytes=capacity))
        copy = pool.createXMLFrom(wanted.to_xml(), source, 0)
        if StorageVolume.from_xml(copy.XMLDesc(0)).backing_path is not None:
            copy.delete(0)
            raise libvirt.libvirtError(f"the copy of {source_name} kept a backing file")
        return str(copy.path())

    @translated
    def volume_exists(self, pool_name: str, name: str) -> bool:
        return self._volume(pool_name, name) is not None

    @translated
    def delete_volume(self, pool_name: str, name: str) -> None:
        volume = self._volume(pool_name, name)
        if volume is not None:
            volume.delete(0)

    # --- network filters -----------------------------------------------------------------

    @translated
    def has_nwfilter(self) -> bool:
        # Every libvirtd has its network filter driver; libvirt's test driver has none.
        return self._conn().getType().lower() != "test"

    @translated
    def ensure_filter(self, spec: FilterSpec) -> bool:
        """Defines the interface's filter, or redefines it when its rules changed: libvirt
        then applies the new rules to running guests at once, without restarting them.
        False on a host without a filter driver (libvirt's test driver)."""
        if not self.has_nwfilter():
            return False
        connection = self._conn()
        wanted = designer.nwfilter(spec)
        current = self._nwfilter(spec.name)
        if current is None or NwFilter.from_xml(current.XMLDesc(0)) != wanted:
            connection.nwfilterDefineXML(wanted.to_xml())
        return True

    @translated
    def delete_filter(self, name: str) -> None:
        """Removes a filter no domain uses any more (libvirt refuses one still in use)."""
        found = self._nwfilter(name) if self.has_nwfilter() else None
        if found is not None:
            found.undefine()

    @translated
    def list_filters(self, prefix: str = "vdc-") -> list[str]:
        if not self.has_nwfilter():
            return []
        return sorted(name for name in self._conn().listNWFilters() if name.startswith(prefix))

    # --- domains -------------------------------------------------------------------------

    @translated
    def ensure_domain(self, spec: DomainSpec) -> Guest:
        connection = self._conn()
        try:
            return lookup(connection, spec.name)
        except NotFoundOnHost:
            return Guest(connection.defineXML(designer.domain(spec).to_xml()), defined_now=True)

    @translated
    def guest(self, name: str) -> Guest:
        return lookup(self._conn(), name)

    def find_guest(self, name: str) -> Guest | None:
        try:
            return self.guest(name)
        except NotFoundOnHost:
            return None

    def attach_disk(self, domain_name: str, disk: DiskSpec) -> None:
        """Attaches a volume: live when the guest runs, and persistently, so it stays
        across stop/start and reboot. The live half goes first: if the guest refuses the
        device, nothing is left in the definition."""
        guest = self.guest(domain_name)
        element = designer.disk(disk)
        guest.hotplug_disk(element)
        guest.add_persistent_disks([element])

    def ensure_persistent_disks(self, domain_name: str, disks: list[DiskSpec]) -> None:
        """Makes the next boot of an existing domain have these disks (a start converges a
        domain defined before a volume was attached to it while vdc was down)."""
        self.guest(domain_name).add_persistent_disks([designer.disk(disk) for disk in disks])

    def ensure_cdrom(self, domain_name: str, drive: CdromSpec) -> None:
        """Makes the domain's CD-ROM drive hold `drive.path` (or nothing: ejected), in its
        definition and, while it runs, live."""
        self.guest(domain_name).set_cdrom(designer.cdrom(drive))

    def ensure_persistent_filters(self, domain_name: str, interfaces: list[InterfaceSpec]) -> None:
        """Makes the next boot of an existing domain guard its interfaces with their filters
        (a domain defined before vdc had security groups gets them at its next start)."""
        self.guest(domain_name).set_persistent_filters(
            [designer.interface(interface) for interface in interfaces]
        )

    def ensure_persistent_display(self, domain_name: str, display: DisplaySpec) -> None:
        """Makes the next boot of an existing domain have a screen (a domain defined before
        vdc gave guests one gets it at its next start); an existing one is kept."""
        self.guest(domain_name).add_persistent_display(designer.display(display), designer.video())

    def display(self, domain_name: str) -> DisplayEndpoint | None:
        """Where the running guest's screen is now; None when it is not running."""
        return self.guest(domain_name).display()

    def detach_disk(self, domain_name: str, serial: str, timeout: float) -> bool:
        """Detaches the volume with this serial: waits (at most `timeout` s) for a running
        guest to release it, then removes it from the persistent definition. False, and the
        definition unchanged, when the guest did not let go in time."""
        guest = self.find_guest(domain_name)
        if guest is None:
            return True
        if not guest.hot_unplug_disk(serial, timeout):
            return False
        guest.remove_persistent_disk(serial)
        return True

    def undefine(self, name: str) -> None:
        guest = self.find_guest(name)
        if guest is not None:
            guest.undefine()

    @translated
    def list_domains(self) -> list[DomainInfo]:
        """Every domain on the host. One that goes away between the listing and the look
        at it (a terminate under way) is simply not there: never a failure of the whole."""
        found = []
        for domain in self._conn().listAllDomains(0):
            try:
                found.append(Guest(domain).info())
            except NotFoundOnHost:
                continue
        return found


def _refresh(pool: libvirt.virStoragePool) -> bool:
    """Rescans the pool's folder; False when libvirt refuses because it is busy creating a
    volume (it says "asynchronous jobs running")."""
    try:
        pool.refresh(0)
    except libvirt.libvirtError as error:
        if "asynchronous jobs" not in (error.get_error_message() or ""):
            raise
        return False
    return True

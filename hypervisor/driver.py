"""Named, idempotent operations on one host; the only code that sends XML to libvirt.

Every step can be repeated safely (a job that died halfway runs again from the top):
ensure_* creates what is missing and leaves what exists; remove/delete of something
already gone is not an error.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

import libvirt

from hypervisor import designer, metadata_redirect
from hypervisor.connection import POOL, ConnectionPool
from hypervisor.errors import NotFoundOnHost, translated
from hypervisor.guest import Guest, lookup
from hypervisor.specs import (
    DhcpHost,
    DiskSpec,
    DomainInfo,
    DomainSpec,
    FilterSpec,
    HostCapacity,
    InterfaceSpec,
    NetworkSpec,
    PoolSpec,
    VolumeSpec,
)
from hypervisor.xml import NwFilter
from hypervisor.xml.base import parse

_UPDATE_BOTH = libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE | libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG


class HostDriver:
    def __init__(self, uri: str, pool: ConnectionPool = POOL) -> None:
        self.uri = uri
        self._pool = pool

    def _conn(self) -> libvirt.virConnect:
        return self._pool.get(self.uri)

    # --- the host itself ---------------------------------------------------------------

    @translated
    def capacity(self) -> HostCapacity:
        connection = self._conn()
        model, memory_mib, cpus, *_ = connection.getInfo()
        return HostCapacity(
            cpu_cores=int(cpus),
            memory_mib=int(memory_mib),
            arch=str(model),
            hypervisor=connection.getType(),
        )

    @translated
    def virt_type(self, requested: str) -> str:
        """The domain type to use: the test driver's own, or kvm/qemu as asked; `auto` picks
        kvm only where libvirt reports it can run KVM guests."""
        connection = self._conn()
        if connection.getType().lower() == "test":
            return "test"
        if requested != "auto":
            return requested
        capabilities = parse(connection.getCapabilities(), "capabilities")
        kvm = capabilities.findall("./guest/arch/domain[@type='kvm']")
        return "kvm" if kvm else "qemu"

    # --- networks ------------------------------------------------------------------------

    @translated
    def ensure_network(self, spec: NetworkSpec) -> None:
        connection = self._conn()
        network = _define_once(
            lambda: connection.networkLookupByName(spec.name),
            lambda: connection.networkDefineXML(designer.network(spec).to_xml()),
            libvirt.VIR_ERR_NO_NETWORK,
        )
        _start_once(network)
        if not network.autostart():
            network.setAutostart(1)

    @translated
    def delete_network(self, name: str) -> None:
        try:
            network = self._conn().networkLookupByName(name)
        except libvirt.libvirtError as error:
            if error.get_error_code() == libvirt.VIR_ERR_NO_NETWORK:
                return
            raise
        if network.isActive():
            network.destroy()
        network.undefine()

    @translated
    def dhcp_hosts(self, network_name: str) -> list[DhcpHost]:
        """Static DHCP entries of the network (live and persistent are kept equal)."""
        network = self._conn().networkLookupByName(network_name)
        return designer.parse_dhcp_hosts(network.XMLDesc(0))

    @translated
    def add_dhcp_host(self, network_name: str, host: DhcpHost) -> None:
        """Makes the network's dnsmasq hand `host.ip` to `host.mac`, live and persistently."""
        existing = {h.mac: h for h in self.dhcp_hosts(network_name)}
        if existing.get(host.mac) == host:
            return
        network = self._conn().networkLookupByName(network_name)
        command = (
            libvirt.VIR_NETWORK_UPDATE_COMMAND_MODIFY
            if host.mac in existing
            else libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST
        )
        flags = _UPDATE_BOTH if network.isActive() else libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG
        network.update(
            command, libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST, -1, designer.dhcp_host(host), flags
        )

    @translated
    def remove_dhcp_host(self, network_name: str, mac: str) -> None:
        try:
            hosts = {h.mac: h for h in self.dhcp_hosts(network_name)}
        except NotFoundOnHost:
            return
        if mac not in hosts:
            return
        network = self._conn().networkLookupByName(network_name)
        flags = _UPDATE_BOTH if network.isActive() else libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG
        network.update(
            libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE,
            libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST,
            -1,
            designer.dhcp_host(hosts[mac]),
            flags,
        )

    @translated
    def dhcp_leases(self, network_name: str) -> list[DhcpHost]:
        """Leases dnsmasq has handed out (what guests really got)."""
        try:
            network = self._conn().networkLookupByName(network_name)
        except libvirt.libvirtError as error:
            if error.get_error_code() == libvirt.VIR_ERR_NO_NETWORK:
                return []
            raise
        if not network.isActive():
            return []
        try:
            leases = network.DHCPLeases() or []
        except libvirt.libvirtError as error:
            if error.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT:  # the test driver
                return []
            raise
        return [
            DhcpHost(mac=lease["mac"], ip=lease["ipaddr"], name=lease.get("hostname"))
            for lease in leases
        ]

    def release_dhcp_lease(self, network_name: str, host: DhcpHost) -> bool:
        """Makes dnsmasq forget a lease now rather than when it expires.

        libvirt has no call for this, so, as OpenStack does, vdc sends dnsmasq a DHCPRELEASE
        for the guest with `dhcp_release` (dnsmasq-utils). That works only on the host vdc
        runs on, in the network namespace of the bridge; elsewhere the lease just expires.
        Returns True when a release was sent.
        """
        if not self.is_local():
            return False
        tool = shutil.which("dhcp_release")
        if tool is None or host.mac not in {lease.mac for lease in self.dhcp_leases(network_name)}:
            return False
        bridge = self._bridge_of(network_name)
        result = subprocess.run(  # noqa: S603 - argument list, values from vdc's database
            [tool, bridge, host.ip, host.mac],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return result.returncode == 0

    def is_local(self) -> bool:
        """True for the host vdc runs on (a URI without a host part), not the test driver."""
        return not urlsplit(self.uri).netloc and self._conn().getType().lower() != "test"

    def ensure_metadata_redirect(self, spec: NetworkSpec, port: int) -> bool:
        """Sends the network's guests' 169.254.169.254:80 to the metadata listener on the
        gateway; on the local host only (see hypervisor/metadata_redirect.py)."""
        if not self.is_local():
            return False
        metadata_redirect.ensure(spec.bridge, spec.gateway, port)
        return True

    @translated
    def _bridge_of(self, network_name: str) -> str:
        return str(self._conn().networkLookupByName(network_name).bridgeName())

    # --- storage -------------------------------------------------------------------------

    @translated
    def ensure_pool(self, spec: PoolSpec) -> None:
        connection = self._conn()

        def define() -> libvirt.virStoragePool:
            pool = connection.storagePoolDefineXML(designer.pool(spec).to_xml())
            try:
                pool.build(0)  # makes the folder
            except libvirt.libvirtError:
                if not pool.isActive():  # a racing job built and started it: fine
                    raise
            return pool

        pool = _define_once(
            lambda: connection.storagePoolLookupByName(spec.name),
            define,
            libvirt.VIR_ERR_NO_STORAGE_POOL,
        )
        _start_once(pool)
        if not pool.autostart():
            pool.setAutostart(1)

    @translated
    def ensure_volume(self, pool_name: str, spec: VolumeSpec) -> str:
        """Creates the qcow2 volume (blank, or an overlay on an image) unless it exists; returns
        its path."""
        pool = self._conn().storagePoolLookupByName(pool_name)
        try:
            return str(pool.storageVolLookupByName(spec.name).path())
        except libvirt.libvirtError as error:
            if error.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
                raise
        try:
            return str(pool.createXML(designer.volume(spec).to_xml(), 0).path())
        except libvirt.libvirtError as error:
            if "exists" not in (error.get_error_message() or ""):
                raise
        # The file is there (a crashed run made it) but the pool has not seen it yet. A
        # refresh is refused while other volumes are being created, so wait for a gap.
        for _ in range(50):
            try:
                pool.refresh(0)
                break
            except libvirt.libvirtError as error:
                if "asynchronous jobs" not in (error.get_error_message() or ""):
                    raise
                time.sleep(0.1)
        return str(pool.storageVolLookupByName(spec.name).path())

    @translated
    def list_volumes(self, pool_name: str) -> list[str]:
        """Names of the volumes in a pool, files put there behind libvirt's back included;
        [] when the pool does not exist."""
        try:
            pool = self._conn().storagePoolLookupByName(pool_name)
        except libvirt.libvirtError as error:
            if error.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
                return []
            raise
        if not pool.isActive():
            return []
        try:
            pool.refresh(0)
        except libvirt.libvirtError as error:  # busy creating a volume: list what it knows
            if "asynchronous jobs" not in (error.get_error_message() or ""):
                raise
        return sorted(pool.listVolumes())

    @translated
    def list_networks(self, prefix: str = "vdc-") -> list[str]:
        connection = self._conn()
        names = connection.listNetworks() + connection.listDefinedNetworks()
        return sorted(name for name in names if name.startswith(prefix))

    @translated
    def volume_exists(self, pool_name: str, name: str) -> bool:
        try:
            self._conn().storagePoolLookupByName(pool_name).storageVolLookupByName(name)
        except libvirt.libvirtError as error:
            if error.get_error_code() in (
                libvirt.VIR_ERR_NO_STORAGE_VOL,
                libvirt.VIR_ERR_NO_STORAGE_POOL,
            ):
                return False
            raise
        return True

    @translated
    def delete_volume(self, pool_name: str, name: str) -> None:
        try:
            volume = self._conn().storagePoolLookupByName(pool_name).storageVolLookupByName(name)
        except libvirt.libvirtError as error:
            if error.get_error_code() in (
                libvirt.VIR_ERR_NO_STORAGE_VOL,
                libvirt.VIR_ERR_NO_STORAGE_POOL,
            ):
                return
            raise
        volume.delete(0)

    # --- network filters -----------------------------------------------------------------

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
        try:
            current = NwFilter.from_xml(connection.nwfilterLookupByName(spec.name).XMLDesc(0))
        except libvirt.libvirtError as error:
            if error.get_error_code() != libvirt.VIR_ERR_NO_NWFILTER:
                raise
        else:
            if current == wanted:
                return True
        connection.nwfilterDefineXML(wanted.to_xml())
        return True

    @translated
    def delete_filter(self, name: str) -> None:
        """Removes a filter no domain uses any more (libvirt refuses one still in use)."""
        if not self.has_nwfilter():
            return
        try:
            found = self._conn().nwfilterLookupByName(name)
        except libvirt.libvirtError as error:
            if error.get_error_code() == libvirt.VIR_ERR_NO_NWFILTER:
                return
            raise
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
            return Guest(connection.defineXML(designer.domain(spec).to_xml()))

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

    def ensure_persistent_filters(self, domain_name: str, interfaces: list[InterfaceSpec]) -> None:
        """Makes the next boot of an existing domain guard its interfaces with their filters
        (a domain defined before vdc had security groups gets them at its next start)."""
        self.guest(domain_name).set_persistent_filters(
            [designer.interface(interface) for interface in interfaces]
        )

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
        return [Guest(domain).info() for domain in self._conn().listAllDomains(0)]


T = TypeVar("T", libvirt.virNetwork, libvirt.virStoragePool)


def _define_once(lookup: Callable[[], T], define: Callable[[], T], missing: int) -> T:
    """Looks up, or defines when missing. Two jobs may race to define the same network or
    pool (the first launches on a new host); the loser finds the winner's definition."""
    try:
        return lookup()
    except libvirt.libvirtError as error:
        if error.get_error_code() != missing:
            raise
    try:
        return define()
    except libvirt.libvirtError as error:
        if "already exists" not in (error.get_error_message() or ""):
            raise
        return lookup()


def _start_once(thing: libvirt.virNetwork | libvirt.virStoragePool) -> None:
    if thing.isActive():
        return
    try:
        thing.create()
    except libvirt.libvirtError:
        if not thing.isActive():  # another job started it meanwhile: fine
            raise

"""A wrapper over virDomain with named operations and vdc's own power-state names."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence

import libvirt

from hypervisor.errors import NotFoundOnHost, absent_if_missing, translated
from hypervisor.specs import VDC_XML_NAMESPACE, DisplayEndpoint, DomainInfo
from hypervisor.xml import DomainDisk, DomainGraphics, DomainInterface, DomainVideo
from hypervisor.xml.base import parse, required_child, serialize

_STATES = {
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "running",  # running, waiting on I/O
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "running",  # shutting down, still running
    libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "paused",
}


# Why qemu paused a guest on its own: a KVM internal error ("emulation failure") leaves the
# reason unknown; the others are I/O errors, a watchdog, a crash, a failed migration.
_FAULT_PAUSES = {
    libvirt.VIR_DOMAIN_PAUSED_UNKNOWN,
    libvirt.VIR_DOMAIN_PAUSED_IOERROR,
    libvirt.VIR_DOMAIN_PAUSED_WATCHDOG,
    libvirt.VIR_DOMAIN_PAUSED_CRASHED,
    libvirt.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED,
}


class Guest:
    def __init__(self, domain: libvirt.virDomain, defined_now: bool = False) -> None:
        self._domain = domain
        # Defined by this call from a whole spec (HostDriver.ensure_domain): its definition
        # has everything the spec asked for, so there is nothing to converge.
        self.defined_now = defined_now

    def __repr__(self) -> str:
        return f"<Guest {self.name}>"

    @property
    def name(self) -> str:
        return str(self._domain.name())

    @translated
    def state(self) -> str:
        state, _reason = self._domain.state()
        return _STATES.get(state, "other")

    def is_running(self) -> bool:
        return self.state() in ("running", "paused")

    @translated
    def start(self) -> None:
        if not self.is_running():
            self._domain.create()

    @translated
    def shutdown(self) -> None:
        """Asks the guest to power off (ACPI power button); returns at once."""
        if self.is_running():
            self._domain.shutdown()

    @translated
    def poweroff(self) -> None:
        """Pulls the plug."""
        try:
            self._domain.destroy()
        except libvirt.libvirtError as error:
            if error.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID:  # not running
                raise

    @translated
    def reboot(self) -> None:
        self._domain.reboot(0)

    @translated
    def undefine(self) -> None:
        self.poweroff()
        flags = libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
        try:
            self._domain.undefineFlags(flags)
        except libvirt.libvirtError as error:
            if error.get_error_code() in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_INVALID_ARG):
                self._domain.undefine()  # drivers without these flags (the test driver)
            else:
                raise

    # --- disks ---------------------------------------------------------------------------
    # A disk is known by its serial (the vdc volume id). Two definitions matter: the live
    # one (what the running guest has) and the persistent one (what the next boot gets).

    @translated
    def disks(self, *, live: bool) -> list[DomainDisk]:
        flags = 0 if live else libvirt.VIR_DOMAIN_XML_INACTIVE
        root = parse(self._domain.XMLDesc(flags), "domain")
        return [DomainDisk.from_element(node) for node in root.findall("devices/disk")]

    def disk_serials(self, *, live: bool) -> set[str]:
        return {disk.serial for disk in self.disks(live=live) if disk.serial}

    @translated
    def add_persistent_disks(self, disks: Sequence[DomainDisk]) -> None:
        """Puts the disks (those not there yet) into the definition the next boot uses.

        Done by redefining the domain from its own persistent XML, as `virsh edit` does:
        that works on every driver (libvirt's test driver has no attachDevice).
        """
        root = self._persistent_root()
        devices = required_child(root, "devices")
        present = {DomainDisk.from_element(node).serial for node in devices.findall("disk")}
        missing = [disk for disk in disks if disk.serial not in present]
        if not missing:
            return
        for disk in missing:
            devices.append(disk.to_element())
        self._domain.connect().defineXML(serialize(root))

    @translated
    def set_persistent_filters(self, interfaces: Sequence[DomainInterface]) -> None:
        """Gives the interfaces (matched by MAC) the filter they should have at the next
        boot: a domain defined before its filter existed gets it when it starts again."""
        root = self._persistent_root()
        wanted = {i.mac: i for i in interfaces if i.mac and i.filter}
        changed = False
        for node in required_child(root, "devices").findall("interface"):
            have = DomainInterface.from_element(node)
            want = wanted.get(have.mac or "")
            if want is None or (have.filter, have.filter_parameters) == (
                want.filter,
                want.filter_parameters,
            ):
                continue
            for old in node.findall("filterref"):
                node.remove(old)
            node.append(want.to_element().find("filterref"))  # type: ignore[arg-type]
            changed = True
        if changed:
            self._domain.connect().defineXML(serialize(root))

    @translated
    def remove_persistent_disk(self, serial: str) -> None:
        root = self._persistent_root()
        devices = required_child(root, "devices")
        found = [
            node
            for node in devices.findall("disk")
            if DomainDisk.from_element(node).serial == serial
        ]
        if not found:
            return
        for node in found:
            devices.remove(node)
        self._domain.connect().defineXML(serialize(root))

    @translated
    def set_cdrom(self, drive: DomainDisk) -> None:
        """Puts the drive's medium (a path, or none: ejected) into the definition the next
        boot uses and, while the guest runs, into its live drive. The live change is forced:
        an installed system may hold the tray locked, and the user asked for the CD out."""
        root = parse(self._domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), "domain")
        devices = required_child(root, "devices")
        drives = [n for n in devices.findall("disk") if n.get("device") == "cdrom"]
        if [DomainDisk.from_element(n).source_file for n in drives] != [drive.source_file]:
            for node in drives:
                devices.remove(node)
            devices.append(drive.to_element())
            self._domain.connect().defineXML(serialize(root))
        if not self._can_hotplug():
            return
        live = [d for d in self.disks(live=True) if d.device == "cdrom"]
        if live and all(d.source_file == drive.source_file for d in live):
            return
        flags = libvirt.VIR_DOMAIN_AFFECT_LIVE | libvirt.VIR_DOMAIN_DEVICE_MODIFY_FORCE
        self._domain.updateDeviceFlags(serialize(drive.to_element()), flags)

    @translated
    def hotplug_disk(self, disk: DomainDisk) -> None:
        """Plugs the disk into the running guest (ACPI PCI hotplug on the `pc` machine);
        nothing to do when the guest is off or has the disk already."""
        if not self._can_hotplug() or disk.serial in self.disk_serials(live=True):
            return
        self._domain.attachDeviceFlags(serialize(disk.to_element()), libvirt.VIR_DOMAIN_AFFECT_LIVE)

    @translated
    def hot_unplug_disk(self, serial: str, timeout: float) -> bool:
        """Asks the running guest to let go of the disk and waits until it has, at most
        `timeout` seconds. ACPI eject is cooperative: a guest that does not answer (no
        `acpiphp`, a hung kernel) keeps the disk. True when the disk is gone."""
        if not self._can_hotplug():
            return True
        live = {disk.serial: disk for disk in self.disks(live=True) if disk.serial}
        if serial not in live:
            return True
        self._domain.detachDeviceFlags(
            serialize(live[serial].to_element()), libvirt.VIR_DOMAIN_AFFECT_LIVE
        )
        deadline = time.monotonic() + timeout
        while serial in self.disk_serials(live=True):
            if time.monotonic() >= deadline or not self.is_running():
                return serial not in self.disk_serials(live=True)
            time.sleep(0.25)
        return True

    # --- the screen ----------------------------------------------------------------------

    @translated
    def display(self) -> DisplayEndpoint | None:
        """The running guest's VNC port and password, from its live definition; None when it
        is not running or has no VNC display."""
        if not self.is_running():
            return None
        secure = libvirt.VIR_DOMAIN_XML_SECURE  # the password is left out otherwise
        root = parse(self._domain.XMLDesc(secure), "domain")
        for node in root.findall("devices/graphics[@type='vnc']"):
            graphics = DomainGraphics.from_element(node)
            if graphics.port is not None and graphics.port > 0:
                return DisplayEndpoint(port=graphics.port, password=graphics.password)
        return None

    @translated
    def add_persistent_display(self, graphics: DomainGraphics, video: DomainVideo) -> None:
        """Gives a domain defined without a screen (before vdc had them) one at its next
        boot; one that has a VNC display keeps it, and its password."""
        root = self._persistent_root()
        devices = required_child(root, "devices")
        if devices.find("graphics[@type='vnc']") is not None:
            return
        devices.append(graphics.to_element())
        if devices.find("video") is None:
            devices.append(video.to_element())
        self._domain.connect().defineXML(serialize(root))

    def _persistent_root(self) -> ET.Element:
        """The definition the next boot uses, to change and define again. Read with its
        secrets (the VNC password): without them, defining it back would drop them."""
        flags = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE
        return parse(self._domain.XMLDesc(flags), "domain")

    def _can_hotplug(self) -> bool:
        # libvirt's test driver cannot change a running domain's devices: on it only the
        # persistent definition changes (what integration tests check).
        return self.is_running() and self._domain.connect().getType().lower() != "test"

    def info(self) -> DomainInfo:
        """Name, state and vdc's marks; NotFoundOnHost when the domain has gone meanwhile."""
        instance_id, account_id = self._vdc_metadata()
        state, reason = self._domain.state()
        return DomainInfo(
            name=self.name,
            state=_STATES.get(state, "other"),
            instance_id=instance_id,
            account_id=account_id,
            stopped_by_fault=state == libvirt.VIR_DOMAIN_PAUSED and reason in _FAULT_PAUSES,
        )

    @translated
    def _vdc_metadata(self) -> tuple[str | None, str | None]:
        try:
            text = self._domain.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, VDC_XML_NAMESPACE)
        except libvirt.libvirtError as error:
            if error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                raise  # gone, which is not the same as "not created by vdc"
            return None, None  # not created by vdc
        element = parse(text, "instance")  # libvirt returns it without its namespace
        return element.get("id"), element.get("account")


def lookup(connection: libvirt.virConnect, name: str) -> Guest:
    domain = absent_if_missing(lambda: connection.lookupByName(name), libvirt.VIR_ERR_NO_DOMAIN)
    if domain is None:
        raise NotFoundOnHost(f"domain {name} not found")
    return Guest(domain)

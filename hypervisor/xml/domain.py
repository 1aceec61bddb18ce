"""libvirt <domain> XML as plain objects: to_xml / from_xml, no policy.

Only what vdc writes is modelled. Parsing a domain libvirt returns ignores everything else
(emulator, controllers, aliases, PCI addresses, ...), so that XML round-trips through
libvirt as far as vdc is concerned. Choices (virtio, machine type, ...) live in
hypervisor/designer.py.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from hypervisor.specs import VDC_XML_NAMESPACE, VDC_XML_PREFIX
from hypervisor.xml.base import (
    element,
    on_off,
    optional_attr,
    optional_text,
    parse,
    parse_int,
    parse_on_off,
    required_attr,
    required_child,
    required_text,
    serialize,
    size_in_bytes,
    sub,
)
from hypervisor.xml.graphics import DomainGraphics, DomainVideo

_VDC_INSTANCE_TAG = f"{{{VDC_XML_NAMESPACE}}}instance"
# A domain document parsed and written back (a disk added to the persistent definition)
# keeps the `vdc:` prefix rather than ElementTree's `ns0:`.
ET.register_namespace(VDC_XML_PREFIX, VDC_XML_NAMESPACE)


@dataclass(frozen=True)
class VdcInstanceMetadata:
    """<vdc:instance id=... account=.../> inside <metadata>: whose domain this is."""

    instance_id: str
    account_id: str

    def to_element(self) -> ET.Element:
        # The prefixed tag and its xmlns declaration are written literally: ElementTree would
        # hoist the declaration to <domain> and its prefix registry is process-global. This
        # is also the form libvirt itself returns.
        return element(
            f"{VDC_XML_PREFIX}:instance",
            **{f"xmlns:{VDC_XML_PREFIX}": VDC_XML_NAMESPACE},
            id=self.instance_id,
            account=self.account_id,
        )

    @classmethod
    def from_element(cls, node: ET.Element) -> VdcInstanceMetadata:
        return cls(required_attr(node, "id"), required_attr(node, "account"))


@dataclass(frozen=True)
class DomainOs:
    arch: str | None = None
    machine: str | None = None
    boot_devices: tuple[str, ...] = ()
    type: str = "hvm"
    smbios_mode: str | None = None  # "sysinfo": the guest's DMI tables come from <sysinfo>

    def to_element(self) -> ET.Element:
        os_element = element("os")
        sub(os_element, "type", self.type, arch=self.arch, machine=self.machine)
        for device in self.boot_devices:
            sub(os_element, "boot", dev=device)
        if self.smbios_mode is not None:
            sub(os_element, "smbios", mode=self.smbios_mode)
        return os_element

    @classmethod
    def from_element(cls, node: ET.Element) -> DomainOs:
        type_element = required_child(node, "type")
        return cls(
            arch=type_element.get("arch"),
            machine=type_element.get("machine"),
            boot_devices=tuple(required_attr(boot, "dev") for boot in node.findall("boot")),
            type=type_element.text or "",
            smbios_mode=optional_attr(node, "smbios", "mode"),
        )


@dataclass(frozen=True)
class DomainDisk:
    target_dev: str
    target_bus: str | None = None
    source_file: str | None = None  # None for a disk that is not a file (or an empty cdrom)
    driver_name: str | None = None
    driver_type: str | None = None  # the image format: qcow2, raw
    serial: str | None = None
    type: str = "file"
    device: str = "disk"
    read_only: bool = False

    def to_element(self) -> ET.Element:
        disk = element("disk", type=self.type, device=self.device)
        if self.driver_name is not None or self.driver_type is not None:
            sub(disk, "driver", name=self.driver_name, type=self.driver_type)
        if self.source_file is not None:
            sub(disk, "source", file=self.source_file)
        sub(disk, "target", dev=self.target_dev, bus=self.target_bus)
        if self.serial is not None:
            sub(disk, "serial", self.serial)
        if self.read_only:
            sub(disk, "readonly")
        return disk

    @classmethod
    def from_element(cls, node: ET.Element) -> DomainDisk:
        target = required_child(node, "target")
        return cls(
            target_dev=required_attr(target, "dev"),
            target_bus=target.get("bus"),
            source_file=optional_attr(node, "source", "file"),
            driver_name=optional_attr(node, "driver", "name"),
            driver_type=optional_attr(node, "driver", "type"),
            serial=optional_text(node, "serial"),
            type=node.get("type", "file"),
            device=node.get("device", "disk"),
            read_only=node.find("readonly") is not None,
        )


@dataclass(frozen=True)
class DomainInterface:
    mac: str | None
    source_network: str | None  # None for an interface that is not on a libvirt network
    model: str | None = None
    type: str = "network"  # "network" (source_network) or "bridge" (source_bridge)
    filter: str | None = None  # <filterref>: the nwfilter guarding this interface
    filter_parameters: tuple[tuple[str, str], ...] = ()  # e.g. (("IP", "10.0.0.5"),)
    source_bridge: str | None = None
    mtu: int | None = None

    def to_element(self) -> ET.Element:
        interface = element("interface", type=self.type)
        if self.mac is not None:
            sub(interface, "mac", address=self.mac)
        if self.source_network is not None:
            sub(interface, "source", network=self.source_network)
        if self.source_bridge is not None:
            sub(interface, "source", bridge=self.source_bridge)
        if self.model is not None:
            sub(interface, "model", type=self.model)
        if self.mtu is not None:
            sub(interface, "mtu", size=self.mtu)
        if self.filter is not None:
            ref = sub(interface, "filterref", filter=self.filter)
            for name, value in self.filter_parameters:
                sub(ref, "parameter", name=name, value=value)
        return interface

    @classmethod
    def from_element(cls, node: ET.Element) -> DomainInterface:
        ref = node.find("filterref")
        mtu = optional_attr(node, "mtu", "size")
        return cls(
            mac=optional_attr(node, "mac", "address"),
            source_network=optional_attr(node, "source", "network"),
            # libvirt adds the bridge to a live <source network=...>: it is not vdc's choice.
            source_bridge=optional_attr(node, "source", "bridge")
            if node.get("type") == "bridge"
            else None,
            mtu=None if mtu is None else parse_int(mtu, "<interface mtu>"),
            model=optional_attr(node, "model", "type"),
            type=node.get("type", "network"),
            filter=None if ref is None else ref.get("filter"),
            filter_parameters=()
            if ref is None
            else tuple(
                (required_attr(p, "name"), required_attr(p, "value"))
                for p in ref.findall("parameter")
            ),
        )


@dataclass(frozen=True)
class DomainSerial:
    target_port: int | None = None
    log_file: str | None = None  # libvirt (virtlogd) copies the guest's output here
    log_append: bool | None = None
    type: str = "pty"

    def to_element(self) -> ET.Element:
        serial = element("serial", type=self.type)
        if self.log_file is not None:
            sub(serial, "log", file=self.log_file, append=on_off(self.log_append))
        sub(serial, "target", port=self.target_port)
        return serial

    @classmethod
    def from_element(cls, node: ET.Element) -> DomainSerial:
        port = optional_attr(node, "target", "port")
        return cls(
            target_port=None if port is None else parse_int(port, "<serial><target port>"),
            log_file=optional_attr(node, "log", "file"),
            log_append=parse_on_off(optional_attr(node, "log", "append")),
            type=node.get("type", "pty"),
        )


@dataclass(frozen=True)
class DomainConsole:
    target_type: str | None = None  # "serial": the console is the first serial port
    type: str = "pty"

    def to_element(self) -> ET.Element:
        console = element("console", type=self.type)
        sub(console, "target", type=self.target_type)
        return console

    @classmethod
    def from_element(cls, node: ET.Element) -> DomainConsole:
        return cls(
            target_type=optional_attr(node, "target", "type"),
            type=node.get("type", "pty"),
        )


@dataclass(frozen=True)
class DomainRng:
    model: str
    backend_model: str  # "random": read from a host device
    backend_path: str  # e.g. /dev/urandom

    def to_element(self) -> ET.Element:
        rng = element("rng", model=self.model)
        sub(rng, "backend", self.backend_path, model=self.backend_model)
        return rng

    @classmethod
    def from_element(cls, node: ET.Element) -> DomainRng:
        backend = required_child(node, "backend")
        return cls(
            model=required_attr(node, "model"),
            backend_model=required_attr(backend, "model"),
            backend_path=backend.text or "",
        )


@dataclass(frozen=True)
class Domain:
    type: str  # kvm, qemu, test
    name: str
    memory_kib: int
    vcpus: int
    os: DomainOs
    uuid: str | None = None
    instance: VdcInstanceMetadata | None = None  # None for domains vdc did not create
    features: tuple[str, ...] = ()  # switches without attributes, e.g. acpi, apic
    cpu_mode: str | None = None
    on_poweroff: str | None = None
    on_reboot: str | None = None
    on_crash: str | None = None
    disks: tuple[DomainDisk, ...] = ()
    interfaces: tuple[DomainInterface, ...] = ()
    serials: tuple[DomainSerial, ...] = ()
    consoles: tuple[DomainConsole, ...] = ()
    memballoon_model: str | None = None
    rng: DomainRng | None = None
    smbios_system: tuple[tuple[str, str], ...] = ()  # <sysinfo><system> entries, in order
    graphics: tuple[DomainGraphics, ...] = ()
    video: DomainVideo | None = None

    def to_xml(self) -> str:
        # Children follow the order libvirt itself uses, so diffs against virsh output read well.
        root = ET.Element("domain", type=self.type)
        sub(root, "name", self.name)
        if self.uuid is not None:
            sub(root, "uuid", self.uuid)
        if self.instance is not None:
            sub(root, "metadata").append(self.instance.to_element())
        sub(root, "memory", self.memory_kib, unit="KiB")
        sub(root, "vcpu", self.vcpus)
        if self.smbios_system:
            system = sub(sub(root, "sysinfo", type="smbios"), "system")
            for name, value in self.smbios_system:
                sub(system, "entry", value, name=name)
        root.append(self.os.to_element())
        if self.features:
            features = sub(root, "features")
            for feature in self.features:
                sub(features, feature)
        if self.cpu_mode is not None:
            sub(root, "cpu", mode=self.cpu_mode)
        lifecycle = (
            ("on_poweroff", self.on_poweroff),
            ("on_reboot", self.on_reboot),
            ("on_crash", self.on_crash),
        )
        for event, action in lifecycle:
            if action is not None:
                sub(root, event, action)
        devices = sub(root, "devices")
        devices.extend(disk.to_element() for disk in self.disks)
        devices.extend(interface.to_element() for interface in self.interfaces)
        devices.extend(serial.to_element() for serial in self.serials)
        devices.extend(console.to_element() for console in self.consoles)
        devices.extend(graphics.to_element() for graphics in self.graphics)
        if self.video is not None:
            devices.append(self.video.to_element())
        if self.memballoon_model is not None:
            sub(devices, "memballoon", model=self.memballoon_model)
        if self.rng is not None:
            devices.append(self.rng.to_element())
        return serialize(root)

    @classmethod
    def from_xml(cls, text: str) -> Domain:
        root = parse(text, "domain")
        devices = root.find("devices")
        if devices is None:
            devices = ET.Element("devices")
        instance = root.find(f"metadata/{_VDC_INSTANCE_TAG}")
        features = root.findall("features/*")
        rng = devices.find("rng")
        video = devices.find("video")
        return cls(
            type=required_attr(root, "type"),
            name=required_text(root, "name"),
            memory_kib=size_in_bytes(required_child(root, "memory"), "KiB") // 1024,
            vcpus=parse_int(required_text(root, "vcpu"), "<vcpu>"),
            os=DomainOs.from_element(required_child(root, "os")),
            uuid=optional_text(root, "uuid"),
            instance=None if instance is None else VdcInstanceMetadata.from_element(instance),
            # Features with settings (e.g. <vmport state='off'/>) are not vdc's; skip them.
            features=tuple(
                feature.tag for feature in features if not feature.attrib and len(feature) == 0
            ),
            cpu_mode=optional_attr(root, "cpu", "mode"),
            on_poweroff=optional_text(root, "on_poweroff"),
            on_reboot=optional_text(root, "on_reboot"),
            on_crash=optional_text(root, "on_crash"),
            disks=tuple(DomainDisk.from_element(e) for e in devices.findall("disk")),
            interfaces=tuple(DomainInterface.from_element(e) for e in devices.findall("interface")),
            serials=tuple(DomainSerial.from_element(e) for e in devices.findall("serial")),
            consoles=tuple(DomainConsole.from_element(e) for e in devices.findall("console")),
            memballoon_model=optional_attr(devices, "memballoon", "model"),
            rng=None if rng is None else DomainRng.from_element(rng),
            graphics=tuple(DomainGraphics.from_element(e) for e in devices.findall("graphics")),
            video=None if video is None else DomainVideo.from_element(video),
            smbios_system=tuple(
                (required_attr(entry, "name"), entry.text or "")
                for entry in root.findall("sysinfo[@type='smbios']/system/entry")
            ),
        )

"""The policy for vdc's libvirt documents: specs (hypervisor/specs.py) in, XML objects out.

hypervisor/xml/ only knows how XML is spelled; every choice (buses, models, machine type,
what happens on reboot) is made here, in small functions the driver calls.
"""

from __future__ import annotations

import uuid as uuid_module
from collections.abc import Iterable

from hypervisor import member_sets
from hypervisor.specs import (
    CdromSpec,
    DhcpHost,
    DiskSpec,
    DisplaySpec,
    DomainSpec,
    FilterRuleSpec,
    FilterSpec,
    InterfaceSpec,
    NetworkSpec,
    PoolSpec,
    VolumeSpec,
)
from hypervisor.xml import (
    Domain,
    DomainConsole,
    DomainDisk,
    DomainGraphics,
    DomainInterface,
    DomainOs,
    DomainRng,
    DomainSerial,
    DomainVideo,
    FilterRule,
    Network,
    NetworkDhcpHost,
    NetworkIp,
    NwFilter,
    StoragePool,
    StorageVolume,
    VdcInstanceMetadata,
)

VIRT_TYPES = ("kvm", "qemu", "test")
FORWARD_MODES = ("nat", "route", "none")
# i440fx ("pc") rather than q35: its ACPI PCI hotplug lets volumes be attached to a running
# guest without pre-allocating PCIe root ports. It exists for x86 guests only.
_MACHINE_TYPE_BY_ARCH = {"x86_64": "pc", "i686": "pc"}
# Fixed, so the same instance always gets the same domain UUID (and DMI serial).
_UUID_NAMESPACE = uuid_module.UUID("5f0e8a52-3c1b-4d7e-9a63-7d2c1e4b9f10")


def domain(spec: DomainSpec) -> Domain:
    if spec.virt_type not in VIRT_TYPES:
        raise ValueError(f"virt_type must be one of {VIRT_TYPES}, not {spec.virt_type!r}")
    machine = _MACHINE_TYPE_BY_ARCH.get(spec.arch)
    if machine is None:
        raise ValueError(f"no machine type for arch {spec.arch!r} (vdc supports x86 guests)")
    uuid = spec.uuid or ec2_uuid(spec.instance_id)
    return Domain(
        type=spec.virt_type,
        name=spec.name,
        uuid=uuid,
        instance=VdcInstanceMetadata(instance_id=spec.instance_id, account_id=spec.account_id),
        memory_kib=spec.memory_mib * 1024,
        vcpus=spec.vcpus,
        os=DomainOs(
            arch=spec.arch, machine=machine, boot_devices=_boot_order(spec), smbios_mode="sysinfo"
        ),
        # cloud-init's ds-identify takes a guest for EC2 (and uses vdc's metadata service,
        # IMDSv2 included) when the DMI product UUID and serial both start with "ec2" and
        # match; the product UUID is the domain's.
        smbios_system=(("manufacturer", "vdc"), ("product", "vdc instance"), ("serial", uuid)),
        features=("acpi", "apic"),  # ACPI: clean shutdown and PCI hotplug
        # The guest sees the host's CPU as is; only meaningful with hardware virtualisation
        # (under TCG the host CPU model cannot be emulated).
        cpu_mode="host-passthrough" if spec.virt_type == "kvm" else None,
        # A guest's "poweroff" ends the domain; vdc notices and marks the instance stopped.
        on_poweroff="destroy",
        on_reboot="restart",
        on_crash="destroy",
        disks=(
            *(_disk(disk) for disk in spec.disks),
            *((cdrom(spec.cdrom),) if spec.cdrom is not None else ()),
        ),
        interfaces=tuple(_interface(interface) for interface in spec.interfaces),
        # One pty serial port, logged to a file so the API can show the console output;
        # append off: each boot starts a fresh log.
        serials=(
            DomainSerial(
                target_port=0,
                log_file=spec.console_log,
                log_append=False if spec.console_log is not None else None,
            ),
        ),
        consoles=(DomainConsole(target_type="serial"),),
        memballoon_model="virtio",
        # Guests (cloud-init, sshd key generation) block at boot without entropy.
        rng=DomainRng(model="virtio", backend_model="random", backend_path="/dev/urandom"),
        graphics=() if spec.display is None else (display(spec.display),),
        video=None if spec.display is None else video(),
    )


def display(spec: DisplaySpec) -> DomainGraphics:
    """The guest's VNC screen: on the host's management address only, a fresh port at each
    start, a password only vdc's proxy knows; shared, so that a second viewer cannot push
    the first out by asking for the screen to itself."""
    return DomainGraphics(
        type="vnc",
        listen=spec.listen,
        autoport=True,
        password=spec.password,
        share_policy="force-shared",
    )


def video() -> DomainVideo:
    """The standard VGA card: its text mode needs no driver in the guest (installers, boot
    loaders and a kernel's vgacon all draw on it)."""
    return DomainVideo(model="vga")


def _boot_order(spec: DomainSpec) -> tuple[str, ...]:
    """An installer CD first, then the disk: the BIOS skips an empty drive (ejected) in a
    moment and boots what was installed."""
    return ("cdrom", "hd") if spec.cdrom is not None else ("hd",)


CDROM_TARGET = "sda"


def cdrom(spec: CdromSpec) -> DomainDisk:
    """The CD-ROM drive: SATA (libvirt adds an AHCI controller), which SeaBIOS boots from and
    the kernels of installers drive; read-only, so instances share one ISO file."""
    return DomainDisk(
        source_file=spec.path,
        target_dev=CDROM_TARGET,
        target_bus="sata",
        driver_name="qemu",
        driver_type="raw",
        device="cdrom",
        read_only=True,
    )


def kvm_probe_domain(name: str, disk_path: str, console_log: str) -> Domain:
    """The guest that tells whether KVM works on a host: it boots a small disk whose boot
    loader (syslinux) prints a prompt on the serial port and waits there. Where nested KVM
    is broken, a guest stops during this kind of BIOS boot ("KVM internal error ...
    emulation failure"), so this is what the probe boots, not an empty machine."""
    return Domain(
        type="kvm",
        name=name,
        memory_kib=64 * 1024,
        vcpus=1,
        os=DomainOs(arch="x86_64", machine="pc", boot_devices=("hd",)),
        features=("acpi",),
        on_poweroff="destroy",
        on_crash="destroy",
        disks=(
            DomainDisk(
                source_file=disk_path,
                target_dev="vda",
                target_bus="virtio",
                driver_name="qemu",
                driver_type="raw",
                read_only=True,  # several probes may boot one disk at once
            ),
        ),
        serials=(DomainSerial(target_port=0, log_file=console_log, log_append=False),),
        consoles=(DomainConsole(target_type="serial"),),
    )


def ec2_uuid(instance_id: str) -> str:
    """A stable domain UUID for an instance, starting with "ec2" as EC2's do."""
    digest = uuid_module.uuid5(_UUID_NAMESPACE, instance_id).hex
    return str(uuid_module.UUID("ec2" + digest[3:]))


def disk(spec: DiskSpec) -> DomainDisk:
    """A virtio disk; its serial shows in the guest as /dev/disk/by-id/virtio-<serial>."""
    return _disk(spec)


def _disk(spec: DiskSpec) -> DomainDisk:
    # No cache='none': it needs O_DIRECT, which tmpfs (test and CI hosts) refuses.
    return DomainDisk(
        source_file=spec.path,
        target_dev=spec.target,
        target_bus="virtio",
        driver_name="qemu",
        driver_type=spec.format,
        serial=spec.serial,
        read_only=spec.read_only,
    )


def interface(spec: InterfaceSpec) -> DomainInterface:
    """A virtio NIC on a libvirt network, guarded by its nwfilter (IP given, not learnt)."""
    return _interface(spec)


def _interface(spec: InterfaceSpec) -> DomainInterface:
    if (spec.network is None) == (spec.bridge is None):
        raise ValueError("an interface is on a libvirt network or on a bridge: name one")
    return DomainInterface(
        mac=spec.mac,
        type="network" if spec.network is not None else "bridge",
        source_network=spec.network,
        source_bridge=spec.bridge,
        # virtio-net reports it to the guest, which needs no DHCP option 26 support then.
        mtu=spec.mtu,
        model=spec.model,
        filter=spec.filter,
        # clean-traffic's IP, given rather than learnt: the guest may use this address only.
        filter_parameters=(("IP", spec.ip),) if spec.filter and spec.ip else (),
    )


# --- network filters -------------------------------------------------------------------------
# libvirt runs a filter's rules by priority, lowest first; clean-traffic's own (MAC, IP and
# ARP anti-spoofing, at layer 2, in ebtables) apply before any of these (layer 3, in
# iptables). A layer-3 rule is about a conversation, not a packet: an `accept` also lets
# the replies through (connection tracking), a `drop` drops both directions of it.
_NO_DHCP_SERVER_PRIORITY = 100
_GROUP_RULE_PRIORITY = 500
_OUTBOUND_PRIORITY = 900
_DROP_PRIORITY = 1000
_FILTER_UUID_NAMESPACE = uuid_module.UUID("0c3c6f0e-4a8e-4f7b-9d2a-2f9e5b1d7a44")


def nwfilter(spec: FilterSpec) -> NwFilter:
    """One interface's filter: clean-traffic, no DHCP server in the guest (only the
    network's own dnsmasq hands out addresses), every outbound conversation, inbound only
    what the security group rules accept."""
    dhcp = (
        # From the network node's dnsmasq, bridged in from another host: the request went
        # to the broadcast address, so the answer is no reply conntrack would recognise.
        FilterRule(
            "accept",
            "in",
            "udp",
            _GROUP_RULE_PRIORITY,
            srcipaddr=spec.dhcp_server,
            srcportstart=67,
            srcportend=67,
            dstportstart=68,
            dstportend=68,
        ),
    )
    rules = (
        FilterRule("drop", "out", "udp", _NO_DHCP_SERVER_PRIORITY, srcportstart=67, srcportend=67),
        *(dhcp if spec.dhcp_server else ()),
        *(_group_rule(rule) for rule in spec.rules),
        # Outbound is open (the metadata service, DNS, updates); replies come back in.
        FilterRule("accept", "out", "all", _OUTBOUND_PRIORITY),
        FilterRule("drop", "in", "all", _DROP_PRIORITY),
    )
    return NwFilter(
        name=spec.name,
        # Fixed per name: redefining a filter (rules changed) must keep its UUID.
        uuid=str(uuid_module.uuid5(_FILTER_UUID_NAMESPACE, spec.name)),
        chain="root",
        filterrefs=("clean-traffic",),
        rules=rules,
    )


def _group_rule(rule: FilterRuleSpec) -> FilterRule:
    network, _, prefix = rule.cidr.partition("/")
    anywhere = rule.cidr == "0.0.0.0/0" or rule.source_group is not None
    address, mask = (None, None) if anywhere else (network, int(prefix))
    # A group's members: the host's set of their addresses, matched as the packet's source.
    group = rule.source_group
    if group is not None and rule.protocol != "any":
        # libvirt (9.0) drops a set from a tcp, udp or icmp rule without a word, and the
        # rule would admit every source: refused here, not left to chance.
        raise ValueError(f"a {rule.protocol} rule cannot match a group's set, only an any rule")
    ipset = None if group is None else member_sets.set_name(group)
    ipsetflags = None if group is None else "src"
    if rule.protocol in ("tcp", "udp"):
        return FilterRule(
            "accept",
            "in",
            rule.protocol,
            _GROUP_RULE_PRIORITY,
            srcipaddr=address,
            srcipmask=mask,
            dstportstart=rule.from_port,
            dstportend=rule.to_port,
        )
    if rule.protocol == "icmp":
        return FilterRule(
            "accept",
            "in",
            "icmp",
            _GROUP_RULE_PRIORITY,
            srcipaddr=address,
            srcipmask=mask,
            type=None if rule.from_port == -1 else rule.from_port,
            code=None if rule.to_port == -1 else rule.to_port,
        )
    if rule.protocol == "any":
        return FilterRule(
            "accept",
            "in",
            "all",
            _GROUP_RULE_PRIORITY,
            srcipaddr=address,
            srcipmask=mask,
            ipset=ipset,
            ipsetflags=ipsetflags,
        )
    raise ValueError(f"protocol must be tcp, udp, icmp or any, not {rule.protocol!r}")


def network(spec: NetworkSpec, hosts: Iterable[DhcpHost] = ()) -> Network:
    if spec.forward not in FORWARD_MODES:
        raise ValueError(f"forward must be one of {FORWARD_MODES}, not {spec.forward!r}")
    return Network(
        name=spec.name,
        # "none" is an isolated network: no <forward> at all. Beware: dnsmasq then sends an
        # empty router option, so guests get no default route (docs/architecture.md).
        forward_mode=None if spec.forward == "none" else spec.forward,
        bridge=spec.bridge,
        # STP on with no forward delay: loops are caught, yet a new guest's port forwards
        # at once instead of after the usual 15 s of listening (which DHCP would miss).
        bridge_stp=True,
        bridge_delay=0,
        domain_name=spec.domain,
        dns_forwarders=spec.dns_servers,
        mtu=spec.mtu,
        ip=NetworkIp(
            address=spec.gateway,
            prefix=spec.prefix,
            dhcp_start=spec.dhcp_start,
            dhcp_end=spec.dhcp_end,
            dhcp_hosts=tuple(_dhcp_host(host) for host in hosts),
        ),
    )


def _dhcp_host(host: DhcpHost) -> NetworkDhcpHost:
    return NetworkDhcpHost(mac=host.mac, ip=host.ip, name=host.name)


def dhcp_host(host: DhcpHost) -> str:
    """The <host/> snippet virNetworkUpdate takes for VIR_NETWORK_SECTION_IP_DHCP_HOST."""
    return _dhcp_host(host).to_xml()


def parse_dhcp_hosts(network_xml: str) -> list[DhcpHost]:
    """The static DHCP entries of a network's XML, as libvirt returns it.

    Entries without a MAC (libvirt allows name-only hosts) were not made by vdc: skipped.
    """
    return [
        DhcpHost(mac=host.mac, ip=host.ip, name=host.name)
        for host in Network.from_xml(network_xml).dhcp_hosts
        if host.mac is not None
    ]


def pool(spec: PoolSpec) -> StoragePool:
    return StoragePool(name=spec.name, target_path=spec.path, type="dir")


def file_volume(name: str, size: int) -> StorageVolume:
    """A volume that holds a file's bytes as they are (an image copy uploaded to a host):
    raw to libvirt, so it never converts or probes them; its users state the real format."""
    return StorageVolume(name=name, capacity_bytes=size, format="raw")


def volume(spec: VolumeSpec) -> StorageVolume:
    """A qcow2 volume; with a backing image, an overlay on it: the image stays shared and
    read-only, and the volume only stores what the guest changes."""
    if spec.backing_path is not None and spec.backing_format is None:
        raise ValueError("a backing file needs its format stated")
    return StorageVolume(
        name=spec.name,
        capacity_bytes=spec.capacity_bytes,
        format="qcow2",
        backing_path=spec.backing_path,
        # Stated explicitly: qemu refuses to probe a backing file's format (a raw image could
        # otherwise pose as qcow2 and point at any host file).
        backing_format=spec.backing_format,
    )

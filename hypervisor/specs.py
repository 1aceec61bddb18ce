"""What the control plane asks of a host, as plain dataclasses (hypervisor imports no app code).

The designer (hypervisor/designer.py) turns these into libvirt XML objects
(hypervisor/xml/); the driver (hypervisor/driver.py) sends those to libvirt.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# vdc's XML namespace for the <metadata> element of domains it creates: a domain found on a
# host can always be traced back to its instance (or recognised as an orphan).
VDC_XML_NAMESPACE = "https://vdc.invalid/xmlns/instance/1"
VDC_XML_PREFIX = "vdc"


@dataclass(frozen=True)
class NetworkSpec:
    """One vdc network as a libvirt network (bridge + dnsmasq) on a host."""

    name: str  # libvirt network name, e.g. "vdc-nw-4kx9a0qz"
    bridge: str  # at most 15 characters (a Linux interface name), e.g. "vdcbr4kx9a0qz"
    gateway: str  # the bridge's address, e.g. "10.0.0.1"
    prefix: int  # e.g. 24
    dhcp_start: str
    dhcp_end: str
    dns_servers: tuple[str, ...] = ()
    domain: str | None = None  # DNS domain handed out by DHCP
    forward: str = "nat"  # "nat", "route" or "none" (isolated)
    mtu: int | None = None  # handed to guests by DHCP (a VXLAN segment needs 1450)


@dataclass(frozen=True)
class DhcpHost:
    """A static DHCP entry: this MAC always gets this IP (and hostname)."""

    mac: str
    ip: str
    name: str | None = None


@dataclass(frozen=True)
class DiskSpec:
    path: str
    format: str = "qcow2"
    target: str = "vda"  # device name in the guest's bus order
    serial: str | None = None  # appears in the guest as /dev/disk/by-id/virtio-<serial>
    read_only: bool = False


@dataclass(frozen=True)
class CdromSpec:
    """The CD-ROM drive of an instance launched from an installer ISO (read-only)."""

    path: str | None  # the ISO file on the host; None: the drive is empty (ejected)


@dataclass(frozen=True)
class InterfaceSpec:
    """A NIC on a libvirt network (the host that has the network's dnsmasq), or on a plain
    bridge of the same layer-2 segment (every other host)."""

    mac: str
    network: str | None = None  # libvirt network name
    bridge: str | None = None  # or a plain Linux bridge
    model: str = "virtio"
    filter: str | None = None  # the nwfilter guarding it (see FilterSpec)
    ip: str | None = None  # the address it may use (clean-traffic's IP parameter)
    mtu: int | None = None


@dataclass(frozen=True)
class FilterRuleSpec:
    """Inbound traffic to accept: tcp/udp ports, icmp type/code (-1: any), or any; from a
    CIDR, or from a security group's members (the host's ipset of their addresses)."""

    protocol: str  # "tcp", "udp", "icmp", "any"
    from_port: int = -1
    to_port: int = -1
    cidr: str = "0.0.0.0/0"  # the source, unless source_group names one
    source_group: str | None = None  # e.g. "sg-4kx9a0qz" (protocol "any" only): member_sets.py


@dataclass(frozen=True)
class FilterSpec:
    """One interface's firewall: no MAC/IP/ARP spoofing, no DHCP server in the guest,
    everything outbound, and inbound only what the rules accept."""

    name: str  # e.g. "vdc-vif-4kx9a0qz"
    rules: tuple[FilterRuleSpec, ...] = ()
    # The network's DHCP server (its gateway): its answers reach a guest on another host
    # across the bridge, so they are let in by name, not only as a local conversation.
    dhcp_server: str | None = None


@dataclass(frozen=True)
class DisplaySpec:
    """A guest's screen as a VNC server of qemu's on its host: on the host's management
    address only (never a guest network), on a port libvirt picks at each start, behind a
    password that only vdc's console proxy ever sees."""

    listen: str  # e.g. "127.0.0.1" on vdc's own host, the host's address on a remote one
    password: str  # VNC authentication uses its first 8 characters only


@dataclass(frozen=True)
class DisplayEndpoint:
    """Where a running guest's screen is now: its port changes at every start."""

    port: int
    password: str | None  # None: the display takes no password


@dataclass(frozen=True)
class DomainSpec:
    name: str  # the vdc instance id, e.g. "i-4kx9a0qz"
    virt_type: str  # "kvm", "qemu" (software emulation) or "test" (libvirt's test driver)
    arch: str  # "x86_64", "i686", "aarch64"
    vcpus: int
    memory_mib: int
    instance_id: str
    account_id: str
    disks: tuple[DiskSpec, ...] = ()
    interfaces: tuple[InterfaceSpec, ...] = ()
    console_log: str | None = None  # the serial console is also logged to this file
    uuid: str | None = None
    display: DisplaySpec | None = None  # None: headless, the serial console only
    cdrom: CdromSpec | None = None  # a drive that boots first (an installer); None: no drive


@dataclass(frozen=True)
class VolumeSpec:
    """A qcow2 volume in a pool: blank, or an overlay whose backing store is an image file
    (an instance's root disk, a volume made from an image)."""

    name: str  # e.g. "i-4kx9a0qz-root.qcow2", "vol-3kx9a0qz.qcow2"
    capacity_bytes: int
    backing_path: str | None = None
    backing_format: str | None = None  # "qcow2" or "raw"; required with backing_path


@dataclass(frozen=True)
class PoolSpec:
    name: str
    path: str


@dataclass(frozen=True)
class SegmentSpec:
    """A vdc network's layer-2 segment on one host: its bridge, joined to the same bridge
    on the other hosts by a VXLAN port (one VNI per network) with a flood entry per peer."""

    bridge: str  # the bridge's name, the same on every host
    vni: int
    local_ip: str  # this host's underlay address
    peers: tuple[str, ...]  # the other hosts' underlay addresses
    mtu: int = 1450
    own_bridge: bool = True  # False where libvirt's network made the bridge (dnsmasq's host)

    @property
    def vxlan(self) -> str:
        return "vx" + self.bridge.removeprefix("vdc")  # "vx" + 8 characters: fits IFNAMSIZ


@dataclass(frozen=True)
class DomainInfo:
    """What the driver reports about a domain found on a host."""

    name: str
    state: str  # "running", "paused", "shutoff", "crashed", "other"
    instance_id: str | None  # from vdc's <metadata>; None for domains vdc did not create
    account_id: str | None = None
    stopped_by_fault: bool = False  # paused by qemu itself (KVM internal error, I/O error)


@dataclass(frozen=True)
class HostCapacity:
    cpu_cores: int
    memory_mib: int
    arch: str
    hypervisor: str = field(default="")  # libvirt's driver type, e.g. "QEMU", "TEST"

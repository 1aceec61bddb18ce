"""The designer's XML against golden files, plus round trips, escaping and parsing libvirt's XML.

Golden files live in tests/unit/hypervisor/golden/<case>.xml. After an intended change to
the designer or the XML classes, regenerate them and review the diff:

    VDC_REGEN_GOLDEN=1 .venv/bin/pytest tests/unit/hypervisor/test_xml_golden.py

With VDC_REGEN_GOLDEN=1 the golden tests write the files instead of comparing.
The same cases are defined on libvirt's test driver in
tests/integration/hypervisor/test_define_on_test_driver.py.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest

from hypervisor import designer
from hypervisor.specs import (
    VDC_XML_NAMESPACE,
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
    DomainDisk,
    DomainInterface,
    DomainSerial,
    Network,
    NetworkDhcpHost,
    NwFilter,
    StoragePool,
    StorageVolume,
    VdcInstanceMetadata,
    XmlError,
)

GOLDEN_DIR = Path(__file__).parent / "golden"
REGENERATE = os.environ.get("VDC_REGEN_GOLDEN") == "1"

KVM_DOMAIN = DomainSpec(
    name="i-4kx9a0qz",
    virt_type="kvm",
    arch="x86_64",
    vcpus=2,
    memory_mib=1024,
    instance_id="i-4kx9a0qz",
    account_id="a-7hq2m3pd",
    uuid="3e1c1f5e-1f3a-4b8e-9c55-0a4b1e0c7f21",
    disks=(DiskSpec(path="/var/lib/vdc/instances/i-4kx9a0qz-root.qcow2"),),
    interfaces=(InterfaceSpec(mac="52:54:00:3a:7c:01", network="vdc-nw-4kx9a0qz"),),
    console_log="/var/log/vdc/console/i-4kx9a0qz.log",
    # A remote host's guest: its screen on that host's management address.
    display=DisplaySpec(listen="192.0.2.10", password="k3Jd9xQa"),
)
QEMU_DOMAIN = DomainSpec(
    name="i-qemu0001",
    virt_type="qemu",
    arch="x86_64",
    vcpus=1,
    memory_mib=256,
    instance_id="i-qemu0001",
    account_id="a-shpoolxx",
    disks=(
        DiskSpec(path="/var/lib/vdc/instances/i-qemu0001-root.qcow2"),
        DiskSpec(
            path="/var/lib/vdc/volumes/vol-data0001.raw",
            format="raw",
            target="vdb",
            serial="vol-data0001",
        ),
    ),
    interfaces=(
        InterfaceSpec(mac="52:54:00:00:00:01", network="vdc-nw-front"),
        InterfaceSpec(mac="52:54:00:00:00:02", network="vdc-nw-back", model="e1000"),
    ),
)
TEST_DOMAIN = DomainSpec(
    name="i-testdrv1",
    virt_type="test",
    arch="i686",  # the only arch the test driver's capabilities offer
    vcpus=1,
    memory_mib=128,
    instance_id="i-testdrv1",
    account_id="a-7hq2m3pd",
    disks=(DiskSpec(path="/var/lib/vdc/instances/i-testdrv1-root.qcow2"),),
    interfaces=(InterfaceSpec(mac="52:54:00:00:00:03", network="vdc-nw-4kx9a0qz"),),
    console_log="/var/log/vdc/console/i-testdrv1.log",
    display=DisplaySpec(listen="127.0.0.1", password="Zp4<&'\"x"),  # escaped like any value
)
NAT_NETWORK = NetworkSpec(
    name="vdc-nw-4kx9a0qz",
    bridge="vdcbr4kx9a0qz",
    gateway="10.0.0.1",
    prefix=24,
    dhcp_start="10.0.0.100",
    dhcp_end="10.0.0.199",
    dns_servers=("192.0.2.53", "198.51.100.53"),
    domain="vdc.internal",
)
NAT_NETWORK_HOSTS = (
    DhcpHost(mac="52:54:00:3a:7c:01", ip="10.0.0.100", name="i-4kx9a0qz"),
    DhcpHost(mac="52:54:00:3a:7c:02", ip="10.0.0.101"),
)
ISOLATED_NETWORK = NetworkSpec(
    name="vdc-nw-isolated",
    bridge="vdcbrisolated",
    gateway="172.16.8.1",
    prefix=22,
    dhcp_start="172.16.8.10",
    dhcp_end="172.16.11.250",
    forward="none",
)
DIR_POOL = PoolSpec(name="vdc-instances", path="/var/lib/vdc/instances")
QCOW2_BACKED_VOLUME = VolumeSpec(
    name="i-4kx9a0qz-root.qcow2",
    capacity_bytes=10 * 1024**3,
    backing_path="/var/lib/vdc/images/wmi-ubuntu24.qcow2",
    backing_format="qcow2",
)
RAW_BACKED_VOLUME = VolumeSpec(
    name="i-qemu0001-root.qcow2",
    capacity_bytes=2 * 1024**3,
    backing_path="/var/lib/vdc/images/wmi-cirros.raw",
    backing_format="raw",
)

# A guarded instance with a volume: a filter on its interface, a data disk with a serial.
GUARDED_DOMAIN = replace(
    TEST_DOMAIN,
    disks=(
        *TEST_DOMAIN.disks,
        DiskSpec(
            path="/var/lib/vdc/volumes/vol-8hd2k1xq.qcow2", target="vdb", serial="vol-8hd2k1xq"
        ),
    ),
    interfaces=(replace(TEST_DOMAIN.interfaces[0], filter="vdc-vif-2mf8x0ka", ip="10.0.0.100"),),
)
BLANK_VOLUME = VolumeSpec(name="vol-8hd2k1xq.qcow2", capacity_bytes=64 * 1024**2)
# Launched from an installer ISO: a blank root disk and the ISO as a CD that boots first.
INSTALLER_DOMAIN = replace(
    QEMU_DOMAIN,
    disks=QEMU_DOMAIN.disks[:1],
    interfaces=QEMU_DOMAIN.interfaces[:1],
    cdrom=CdromSpec(path="/var/lib/vdc/images/wmi-debian12.iso"),
)
# The default group: its members may reach each other on anything (the host's ipset of
# their addresses, hypervisor/member_sets.py: the filter stays as members come and go).
DEFAULT_GROUP_FILTER = FilterSpec(
    name="vdc-vif-2mf8x0ka",
    rules=(FilterRuleSpec("any", source_group="sg-2mf8x0ka"),),
)
# A web tier: ssh from anywhere, a port range from 10/8, ping, DNS, icmp from a /24, and
# anything from another group's members.
WEB_FILTER = FilterSpec(
    name="vdc-vif-7yq3c5rb",
    rules=(
        FilterRuleSpec("tcp", 22, 22),
        FilterRuleSpec("tcp", 8000, 8080, "10.0.0.0/8"),
        FilterRuleSpec("udp", 53, 53, "192.168.0.0/16"),
        FilterRuleSpec("icmp", -1, -1),
        FilterRuleSpec("icmp", 8, -1, "172.16.5.0/24"),
        FilterRuleSpec("icmp", 3, 4, "172.16.5.0/24"),
        FilterRuleSpec("any", source_group="sg-7yq3c5rb"),  # anything from the app tier
    ),
)

# case name -> the designer's object for it; its XML is golden/<case name>.xml
GOLDEN_CASES: dict[str, Domain | Network | StoragePool | StorageVolume | NwFilter] = {
    "domain_kvm": designer.domain(KVM_DOMAIN),
    "domain_qemu": designer.domain(QEMU_DOMAIN),
    "domain_test": designer.domain(TEST_DOMAIN),
    "domain_guarded_with_volume": designer.domain(GUARDED_DOMAIN),
    "domain_installer_cd": designer.domain(INSTALLER_DOMAIN),
    "network_nat": designer.network(NAT_NETWORK, NAT_NETWORK_HOSTS),
    "network_isolated": designer.network(ISOLATED_NETWORK),
    "pool_dir": designer.pool(DIR_POOL),
    "volume_root_qcow2_backing": designer.volume(QCOW2_BACKED_VOLUME),
    "volume_root_raw_backing": designer.volume(RAW_BACKED_VOLUME),
    "volume_blank": designer.volume(BLANK_VOLUME),
    "nwfilter_default_group": designer.nwfilter(DEFAULT_GROUP_FILTER),
    "nwfilter_web_tier": designer.nwfilter(WEB_FILTER),
}


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_designer_output_matches_golden_file(case: str) -> None:
    golden = GOLDEN_DIR / f"{case}.xml"
    produced = GOLDEN_CASES[case].to_xml()
    if REGENERATE:
        GOLDEN_DIR.mkdir(exist_ok=True)
        golden.write_text(produced)
        return
    assert golden.exists(), f"missing {golden}: run with VDC_REGEN_GOLDEN=1 to create it"
    assert produced == golden.read_text()


def test_every_golden_file_has_a_case() -> None:
    # A renamed case would otherwise leave a stale golden file behind unnoticed.
    # (returned_by_libvirt_*.xml are inputs for the parsing tests, not designer output.)
    produced = {path.stem for path in GOLDEN_DIR.glob("*.xml")} - {
        path.stem for path in GOLDEN_DIR.glob("returned_by_libvirt_*.xml")
    }
    assert produced == set(GOLDEN_CASES)


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_round_trip(case: str) -> None:
    document = GOLDEN_CASES[case]
    assert type(document).from_xml(document.to_xml()) == document


def test_dhcp_host_snippet_is_what_network_update_takes() -> None:
    snippet = designer.dhcp_host(NAT_NETWORK_HOSTS[0])
    assert snippet == '<host mac="52:54:00:3a:7c:01" ip="10.0.0.100" name="i-4kx9a0qz" />\n'
    assert NetworkDhcpHost.from_xml(snippet) == NetworkDhcpHost(
        mac="52:54:00:3a:7c:01", ip="10.0.0.100", name="i-4kx9a0qz"
    )
    assert designer.dhcp_host(NAT_NETWORK_HOSTS[1]) == (
        '<host mac="52:54:00:3a:7c:02" ip="10.0.0.101" />\n'
    )


def test_dhcp_hosts_parse_back_from_a_whole_network() -> None:
    network_xml = designer.network(NAT_NETWORK, NAT_NETWORK_HOSTS).to_xml()
    assert designer.parse_dhcp_hosts(network_xml) == list(NAT_NETWORK_HOSTS)
    assert designer.parse_dhcp_hosts(designer.network(ISOLATED_NETWORK).to_xml()) == []


def test_an_ejected_cd_is_an_empty_drive_and_still_boots_first() -> None:
    ejected = designer.domain(replace(INSTALLER_DOMAIN, cdrom=CdromSpec(path=None)))
    (drive,) = [disk for disk in ejected.disks if disk.device == "cdrom"]
    assert (drive.source_file, drive.read_only, drive.target_bus) == (None, True, "sata")
    assert ejected.os.boot_devices == ("cdrom", "hd")  # the BIOS skips an empty drive
    assert Domain.from_xml(ejected.to_xml()) == ejected
    assert designer.domain(QEMU_DOMAIN).os.boot_devices == ("hd",)


def test_cpu_passthrough_only_with_kvm() -> None:
    assert designer.domain(KVM_DOMAIN).cpu_mode == "host-passthrough"
    assert designer.domain(QEMU_DOMAIN).cpu_mode is None
    assert designer.domain(TEST_DOMAIN).cpu_mode is None


def test_designer_refuses_what_it_cannot_build() -> None:
    with pytest.raises(ValueError, match="virt_type"):
        designer.domain(replace(KVM_DOMAIN, virt_type="xen"))
    with pytest.raises(ValueError, match="arch"):
        designer.domain(replace(KVM_DOMAIN, arch="aarch64"))
    with pytest.raises(ValueError, match="forward"):
        designer.network(replace(NAT_NETWORK, forward="bridge"))


# --- escaping --------------------------------------------------------------------------------

NASTY = "a<b>&c'd\"e"


def test_nasty_values_survive_a_domain_round_trip() -> None:
    document = Domain(
        type="kvm",
        name=NASTY,
        memory_kib=1024,
        vcpus=1,
        os=designer.domain(KVM_DOMAIN).os,
        instance=VdcInstanceMetadata(instance_id=NASTY, account_id=NASTY),
        disks=(DomainDisk(target_dev="vda", source_file=f"/tmp/{NASTY}.qcow2", serial=NASTY),),
        interfaces=(DomainInterface(mac="52:54:00:00:00:09", source_network=NASTY),),
        serials=(DomainSerial(target_port=0, log_file=f"/tmp/{NASTY}.log", log_append=False),),
    )
    text = document.to_xml()
    assert ET.fromstring(text).findtext("name") == NASTY  # well-formed, value intact
    assert Domain.from_xml(text) == document


def test_nasty_values_survive_network_and_storage_round_trips() -> None:
    network = designer.network(
        replace(NAT_NETWORK, name=NASTY, domain=NASTY),
        [DhcpHost(mac="52:54:00:00:00:09", ip="10.0.0.109", name=NASTY)],
    )
    volume = designer.volume(
        VolumeSpec(name=NASTY, capacity_bytes=1, backing_path=f"/{NASTY}", backing_format="raw")
    )
    pool = designer.pool(PoolSpec(name=NASTY, path=f"/{NASTY}"))
    host_snippet = designer.dhcp_host(DhcpHost(mac="52:54:00:00:00:09", ip="10.0.0.9", name=NASTY))
    for document in (network, volume, pool):
        ET.fromstring(document.to_xml())  # well-formed
        assert type(document).from_xml(document.to_xml()) == document
    assert ET.fromstring(host_snippet).get("name") == NASTY


def test_malformed_or_foreign_xml_is_an_xml_error() -> None:
    with pytest.raises(XmlError):
        Domain.from_xml("<domain type='kvm'><name>x</name>")
    with pytest.raises(XmlError, match="expected <network>"):
        Network.from_xml(designer.pool(DIR_POOL).to_xml())
    with pytest.raises(XmlError, match="memory"):
        Domain.from_xml(
            "<domain type='kvm'><name>x</name><vcpu>1</vcpu><os><type>hvm</type></os></domain>"
        )


# --- XML as libvirt returns it ---------------------------------------------------------------

# What libvirt (qemu driver) returns for a running domain vdc defined, with the elements it
# adds (emulator, controllers, aliases, addresses, ...) and someone else's metadata.
LIBVIRT_RUNNING_DOMAIN = (GOLDEN_DIR / "returned_by_libvirt_domain.xml").read_text()


def test_domain_returned_by_libvirt_parses_to_what_vdc_wrote() -> None:
    parsed = Domain.from_xml(LIBVIRT_RUNNING_DOMAIN)
    assert parsed.os.machine == "pc-i440fx-7.2"  # libvirt expands the "pc" alias
    assert parsed.graphics[0].port == 5901  # the port autoport gave the running guest
    # Everything else reads back as written: the elements libvirt adds are skipped, the
    # memory given in GiB is converted, <vmport state='off'/> and the other metadata ignored.
    as_written = replace(
        parsed,
        os=replace(parsed.os, machine="pc"),
        graphics=(replace(parsed.graphics[0], port=None),),
    )
    assert as_written == designer.domain(KVM_DOMAIN)


def test_a_headless_domain_has_no_screen_and_a_guest_with_one_has_vga() -> None:
    assert (designer.domain(QEMU_DOMAIN).graphics, designer.domain(QEMU_DOMAIN).video) == ((), None)
    screen = ET.fromstring(GOLDEN_CASES["domain_kvm"].to_xml()).find("devices/graphics")
    assert screen is not None
    assert screen.attrib == {
        "type": "vnc",
        "autoport": "yes",
        "sharePolicy": "force-shared",
        "passwd": "k3Jd9xQa",
    }
    assert [(e.tag, e.attrib) for e in screen] == [
        ("listen", {"type": "address", "address": "192.0.2.10"})
    ]


def test_domain_without_vdc_metadata_has_no_instance() -> None:
    minimal = (
        "<domain type='qemu'><name>someone-else</name><memory>65536</memory>"
        "<vcpu>1</vcpu><os><type>hvm</type></os></domain>"
    )
    parsed = Domain.from_xml(minimal)
    assert parsed.instance is None
    assert parsed.memory_kib == 65536  # libvirt's default unit is KiB
    assert (parsed.disks, parsed.interfaces, parsed.rng) == ((), (), None)


def test_network_returned_by_libvirt_parses() -> None:
    returned = (GOLDEN_DIR / "returned_by_libvirt_network.xml").read_text()
    parsed = Network.from_xml(returned)
    assert parsed.forward_mode == "nat"
    assert parsed.dns_forwarders == ("192.0.2.53",)
    assert parsed.ip is not None
    assert (parsed.ip.address, parsed.ip.prefix) == ("10.0.0.1", 24)
    assert designer.parse_dhcp_hosts(returned) == [NAT_NETWORK_HOSTS[0]]
    assert Network.from_xml("<network><name>n</name><forward/></network>").forward_mode == "nat"


def test_volume_and_pool_returned_by_libvirt_parse() -> None:
    volume = StorageVolume.from_xml("""<volume type='file'>
      <name>i-4kx9a0qz-root.qcow2</name><key>/p/i-4kx9a0qz-root.qcow2</key>
      <capacity unit='bytes'>10737418240</capacity><allocation unit='bytes'>196608</allocation>
      <target><path>/p/i-4kx9a0qz-root.qcow2</path><format type='qcow2'/>
        <permissions><mode>0600</mode></permissions></target>
      <backingStore><path>/img/wmi-cirros.raw</path><format type='raw'/></backingStore>
    </volume>""")
    assert volume == StorageVolume(
        name="i-4kx9a0qz-root.qcow2",
        capacity_bytes=10 * 1024**3,
        format="qcow2",
        backing_path="/img/wmi-cirros.raw",
        backing_format="raw",
        target_path="/p/i-4kx9a0qz-root.qcow2",
    )
    pool = StoragePool.from_xml("""<pool type='dir'><name>vdc</name>
      <uuid>0b0e3f7a-0000-4000-8000-000000000003</uuid><capacity unit='bytes'>1</capacity>
      <source/><target><path>/p</path></target></pool>""")
    assert pool == StoragePool(
        name="vdc", target_path="/p", uuid="0b0e3f7a-0000-4000-8000-000000000003"
    )


def test_vdc_metadata_uses_the_vdc_namespace() -> None:
    root = ET.fromstring(GOLDEN_CASES["domain_kvm"].to_xml())
    instance = root.find(f"metadata/{{{VDC_XML_NAMESPACE}}}instance")
    assert instance is not None
    assert instance.attrib == {"id": "i-4kx9a0qz", "account": "a-7hq2m3pd"}


def test_a_filter_keeps_its_uuid_when_its_rules_change() -> None:
    changed = designer.nwfilter(replace(WEB_FILTER, rules=WEB_FILTER.rules[:1]))
    assert changed.uuid == designer.nwfilter(WEB_FILTER).uuid
    assert changed.uuid != designer.nwfilter(DEFAULT_GROUP_FILTER).uuid
    assert len(changed.rules) == len(designer.nwfilter(WEB_FILTER).rules) - 6  # 7 group rules -> 1


def test_a_filter_refuses_an_unknown_protocol() -> None:
    with pytest.raises(ValueError, match="protocol"):
        designer.nwfilter(replace(WEB_FILTER, rules=(FilterRuleSpec("sctp", 1, 1),)))


def test_a_rule_from_a_group_matches_its_member_set_by_source() -> None:
    (rule,) = [r for r in designer.nwfilter(WEB_FILTER).rules if r.ipset]
    assert (rule.protocol, rule.ipset, rule.ipsetflags) == ("all", "vdc-sg-7yq3c5rb", "src")
    assert rule.srcipaddr is None and rule.srcipmask is None  # the set, not an address


@pytest.mark.parametrize("protocol", ["tcp", "udp", "icmp"])
def test_only_an_any_rule_may_match_a_groups_set(protocol: str) -> None:
    # libvirt 9.0 keeps a set on an `all` rule only: on these it drops it without a word,
    # and the rule would admit every source.
    rule = FilterRuleSpec(protocol, 80, 80, source_group="sg-7yq3c5rb")
    with pytest.raises(ValueError, match="only an any rule"):
        designer.nwfilter(replace(WEB_FILTER, rules=(rule,)))

"""The designer's documents are accepted by real libvirt (its in-process test:// driver).

Each test opens its own test driver from a node file in tmp_path, so no state leaks
between tests the way it does through the process-wide test:///default. A node file
holding just <node/> is enough: the driver starts empty (no domains, networks or pools).

The test driver parses every document with libvirt's own XML parser but checks little
else (it accepts any arch and networks that do not exist), and it never touches the
filesystem: a pool's directory is not created and a volume is not written.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import libvirt
import pytest

from hypervisor import designer
from hypervisor.specs import VDC_XML_NAMESPACE, DhcpHost, DomainSpec, PoolSpec
from hypervisor.xml import Domain, Network, StoragePool, StorageVolume, VdcInstanceMetadata
from tests.unit.hypervisor.test_xml_golden import (
    DIR_POOL,
    GOLDEN_CASES,
    ISOLATED_NETWORK,
    KVM_DOMAIN,
    NAT_NETWORK,
    NAT_NETWORK_HOSTS,
    QCOW2_BACKED_VOLUME,
    QEMU_DOMAIN,
    RAW_BACKED_VOLUME,
    TEST_DOMAIN,
)

UPDATE_LIVE_AND_CONFIG = (
    libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE | libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG
)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[libvirt.virConnect]:
    node = tmp_path / "node.xml"
    node.write_text("<node/>\n")
    connection = libvirt.open(f"test://{node}")
    yield connection
    connection.close()


def _started_pool(conn: libvirt.virConnect, spec: PoolSpec) -> libvirt.virStoragePool:
    pool = conn.storagePoolDefineXML(designer.pool(spec).to_xml(), 0)
    pool.build(0)
    pool.create(0)
    return pool


# libvirt's test driver has no network filter driver: filters are defined by real libvirtd
# in the e2e tests (tests/e2e/test_security_groups_e2e.py).
@pytest.mark.parametrize("case", sorted(c for c in GOLDEN_CASES if not c.startswith("nwfilter")))
def test_every_golden_document_is_accepted(conn: libvirt.virConnect, case: str) -> None:
    document = GOLDEN_CASES[case]
    xml = document.to_xml()
    if isinstance(document, Domain):
        conn.defineXML(xml).create()
    elif isinstance(document, Network):
        conn.networkDefineXML(xml).create()
    elif isinstance(document, StoragePool):
        conn.storagePoolDefineXML(xml, 0).create(0)
    else:
        _started_pool(conn, DIR_POOL).createXML(xml, 0)


def test_network_starts_and_takes_dhcp_hosts_live(conn: libvirt.virConnect) -> None:
    network = conn.networkDefineXML(designer.network(NAT_NETWORK, NAT_NETWORK_HOSTS[:1]).to_xml())
    network.create()
    assert network.isActive()
    new_host = DhcpHost(mac="52:54:00:3a:7c:09", ip="10.0.0.109", name="i-newhost1")

    network.update(
        libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST,
        libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST,
        -1,
        designer.dhcp_host(new_host),
        UPDATE_LIVE_AND_CONFIG,
    )
    assert designer.parse_dhcp_hosts(network.XMLDesc(0)) == [NAT_NETWORK_HOSTS[0], new_host]

    network.update(
        libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE,
        libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST,
        -1,
        designer.dhcp_host(new_host),
        UPDATE_LIVE_AND_CONFIG,
    )
    assert designer.parse_dhcp_hosts(network.XMLDesc(0)) == [NAT_NETWORK_HOSTS[0]]
    # The persistent definition changed too: it is what the network restarts with.
    network.destroy()
    assert designer.parse_dhcp_hosts(network.XMLDesc(0)) == [NAT_NETWORK_HOSTS[0]]


def test_network_reads_back_as_written(conn: libvirt.virConnect) -> None:
    for spec, hosts in ((NAT_NETWORK, NAT_NETWORK_HOSTS), (ISOLATED_NETWORK, ())):
        written = designer.network(spec, hosts)
        network = conn.networkDefineXML(written.to_xml())
        network.create()
        returned = Network.from_xml(network.XMLDesc(0))
        assert returned.uuid is not None  # libvirt generated one
        assert returned == replace(written, uuid=returned.uuid)


def test_pool_builds_starts_and_holds_root_volumes(
    conn: libvirt.virConnect, tmp_path: Path
) -> None:
    spec = PoolSpec(name="vdc-instances", path=str(tmp_path / "instances"))
    pool = _started_pool(conn, spec)
    assert pool.isActive()
    assert StoragePool.from_xml(pool.XMLDesc(0)).target_path == spec.path

    for volume_spec in (QCOW2_BACKED_VOLUME, RAW_BACKED_VOLUME):
        volume = pool.createXML(designer.volume(volume_spec).to_xml(), 0)
        returned = StorageVolume.from_xml(volume.XMLDesc(0))
        assert returned == StorageVolume(
            name=volume_spec.name,
            capacity_bytes=volume_spec.capacity_bytes,
            format="qcow2",
            backing_path=volume_spec.backing_path,
            backing_format=volume_spec.backing_format,
            target_path=f"{spec.path}/{volume_spec.name}",
        )
    assert sorted(pool.listVolumes()) == sorted([QCOW2_BACKED_VOLUME.name, RAW_BACKED_VOLUME.name])


@pytest.mark.parametrize("spec", [KVM_DOMAIN, QEMU_DOMAIN, TEST_DOMAIN], ids=lambda s: s.virt_type)
def test_domain_starts_and_vdc_metadata_survives(
    conn: libvirt.virConnect, spec: DomainSpec
) -> None:
    for index, interface in enumerate(spec.interfaces):
        network_spec = replace(NAT_NETWORK, name=interface.network, bridge=f"vdcbrtest{index}")
        conn.networkDefineXML(designer.network(network_spec).to_xml()).create()
    written = designer.domain(spec)
    domain = conn.defineXML(written.to_xml())
    domain.create()
    assert domain.isActive()

    for flags in (0, libvirt.VIR_DOMAIN_XML_INACTIVE):
        returned = Domain.from_xml(domain.XMLDesc(flags))
        assert returned.instance == VdcInstanceMetadata(
            instance_id=spec.instance_id, account_id=spec.account_id
        )
        assert returned.name == spec.name
        assert returned.memory_kib == spec.memory_mib * 1024
        assert returned.disks == written.disks
        assert returned.interfaces == written.interfaces
        assert returned.serials == written.serials
        assert returned.rng == written.rng
        assert returned.cpu_mode == written.cpu_mode

    # libvirt's own metadata API finds vdc's element by namespace (how orphans are traced).
    element = domain.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, VDC_XML_NAMESPACE)
    assert f'id="{spec.instance_id}"' in element

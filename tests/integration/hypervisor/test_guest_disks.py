"""Disks added to and removed from a domain's persistent definition (libvirt's test driver):
the redefinition keeps everything else, vdc's <metadata> included, and is idempotent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from hypervisor import designer
from hypervisor.driver import HostDriver
from hypervisor.specs import DiskSpec
from hypervisor.xml import Domain
from tests.unit.hypervisor.test_xml_golden import TEST_DOMAIN


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[HostDriver]:
    node = tmp_path / "node.xml"
    node.write_text("<node/>\n")
    driver = HostDriver(f"test://{node}")
    driver.ensure_domain(TEST_DOMAIN).start()
    yield driver


def persistent(driver: HostDriver) -> Domain:
    domain = driver._conn().lookupByName(TEST_DOMAIN.name)
    return Domain.from_xml(domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))


def test_attach_and_detach_change_only_the_disk(driver: HostDriver) -> None:
    before = persistent(driver)
    volume = DiskSpec(path="/v/vol-1.qcow2", target="vdb", serial="vol-1")
    driver.attach_disk(TEST_DOMAIN.name, volume)
    driver.attach_disk(TEST_DOMAIN.name, volume)  # a job run twice adds it once

    after = persistent(driver)
    assert [(d.target_dev, d.serial) for d in after.disks] == [("vda", None), ("vdb", "vol-1")]
    assert after.disks[1] == designer.disk(volume)
    assert after.instance == before.instance  # still traceable to its instance
    assert driver.guest(TEST_DOMAIN.name).info().instance_id == TEST_DOMAIN.instance_id
    assert (after.interfaces, after.serials, after.os) == (
        before.interfaces,
        before.serials,
        before.os,
    )

    assert driver.detach_disk(TEST_DOMAIN.name, "vol-1", timeout=1)
    assert driver.detach_disk(TEST_DOMAIN.name, "vol-1", timeout=1)  # already gone: fine
    assert persistent(driver) == before


def test_detach_from_a_domain_that_is_gone_is_done(driver: HostDriver) -> None:
    driver.undefine(TEST_DOMAIN.name)
    assert driver.detach_disk(TEST_DOMAIN.name, "vol-1", timeout=1)


def test_ensure_persistent_disks_adds_only_the_missing(driver: HostDriver) -> None:
    first = DiskSpec(path="/v/a.qcow2", target="vdb", serial="vol-a")
    second = DiskSpec(path="/v/b.qcow2", target="vdc", serial="vol-b")
    driver.attach_disk(TEST_DOMAIN.name, first)
    driver.ensure_persistent_disks(TEST_DOMAIN.name, [first, second])
    assert [d.serial for d in persistent(driver).disks] == [None, "vol-a", "vol-b"]


def test_a_domain_defined_without_filters_gets_them_for_its_next_boot(
    driver: HostDriver,
) -> None:
    from dataclasses import replace

    plain = TEST_DOMAIN.interfaces[0]
    guarded = replace(plain, filter="vdc-vif-2mf8x0ka", ip="10.0.0.100")
    assert persistent(driver).interfaces[0].filter is None
    driver.ensure_persistent_filters(TEST_DOMAIN.name, [guarded])
    driver.ensure_persistent_filters(TEST_DOMAIN.name, [guarded])  # once is enough
    after = persistent(driver)
    assert after.interfaces[0] == designer.interface(guarded)
    assert after.instance is not None  # the rest of the definition is untouched
    assert [d.target_dev for d in after.disks] == ["vda"]


def test_ensure_domain_says_whether_it_defined_the_domain_now(tmp_path: Path) -> None:
    """A launch converges (reads back and redefines) only a domain defined before it: one
    defined now from the whole spec has nothing to catch up on."""
    node = tmp_path / "node.xml"
    node.write_text("<node/>\n")
    driver = HostDriver(f"test://{node}")
    assert driver.ensure_domain(TEST_DOMAIN).defined_now
    assert not driver.ensure_domain(TEST_DOMAIN).defined_now  # found: the job ran before
    assert not driver.guest(TEST_DOMAIN.name).defined_now

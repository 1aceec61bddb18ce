"""A guest's screen on libvirt's test driver: its password survives every redefinition vdc
makes, a domain defined without a screen gets one for its next boot, and the live port is
read from the running domain."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import libvirt
import pytest

from hypervisor.driver import HostDriver
from hypervisor.specs import DiskSpec, DisplayEndpoint, DisplaySpec
from hypervisor.xml import Domain
from tests.unit.hypervisor.test_xml_golden import TEST_DOMAIN

SECRET = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[HostDriver]:
    node = tmp_path / "node.xml"
    node.write_text("<node/>\n")
    yield HostDriver(f"test://{node}")


def persistent(driver: HostDriver) -> Domain:
    return Domain.from_xml(driver._conn().lookupByName(TEST_DOMAIN.name).XMLDesc(SECRET))


def test_the_password_survives_disk_and_filter_changes(driver: HostDriver) -> None:
    """vdc redefines a domain from its own XML to add a disk or a filter: read without
    VIR_DOMAIN_XML_SECURE, that XML has no password, and the screen would lose it."""
    driver.ensure_domain(TEST_DOMAIN).start()
    assert TEST_DOMAIN.display is not None
    password = TEST_DOMAIN.display.password
    assert persistent(driver).graphics[0].password == password

    driver.attach_disk(TEST_DOMAIN.name, DiskSpec(path="/v/vol-1.qcow2", target="vdb", serial="v1"))
    driver.ensure_persistent_filters(
        TEST_DOMAIN.name,
        [replace(TEST_DOMAIN.interfaces[0], filter="vdc-vif-00000001", ip="10.0.0.7")],
    )
    assert driver.detach_disk(TEST_DOMAIN.name, "v1", timeout=1)
    after = persistent(driver)
    assert after.interfaces[0].filter == "vdc-vif-00000001"  # the changes were made
    assert [(g.password, g.listen) for g in after.graphics] == [(password, "127.0.0.1")]


def test_a_domain_without_a_screen_gets_one_once(driver: HostDriver) -> None:
    headless = replace(TEST_DOMAIN, display=None)
    driver.ensure_domain(headless)
    assert persistent(driver).graphics == ()

    display = DisplaySpec(listen="127.0.0.1", password="first123")
    driver.ensure_persistent_display(TEST_DOMAIN.name, display)
    driver.ensure_persistent_display(
        TEST_DOMAIN.name, replace(display, password="second45")
    )  # a start run twice: the screen (and its password) made first stays
    after = persistent(driver)
    assert [(g.type, g.password) for g in after.graphics] == [("vnc", "first123")]
    assert after.video is not None and after.video.model == "vga"


def test_the_live_port_comes_from_the_running_domain(driver: HostDriver) -> None:
    # The test driver gives no port (autoport leaves -1): no display to reach yet.
    driver.ensure_domain(TEST_DOMAIN).start()
    assert driver.display(TEST_DOMAIN.name) is None
    # A fixed port stands in for the one qemu's autoport would give.
    domain = driver._conn().lookupByName(TEST_DOMAIN.name)
    domain.destroy()
    xml = domain.XMLDesc(SECRET).replace("port='-1' autoport='yes'", "port='5917' autoport='no'")
    driver._conn().defineXML(xml)
    assert driver.display(TEST_DOMAIN.name) is None  # not running: nothing to reach
    driver.guest(TEST_DOMAIN.name).start()
    assert TEST_DOMAIN.display is not None
    assert driver.display(TEST_DOMAIN.name) == DisplayEndpoint(
        port=5917, password=TEST_DOMAIN.display.password
    )

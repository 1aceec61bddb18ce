"""The leak checker against a test:// host: empty when the database and the host agree
(terminating everything leaves nothing), and every kind of leak named when they do not."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import libvirt
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session

from app.config import Settings
from app.services import doctor
from app.services.doctor import Finding
from hypervisor.connection import POOL
from hypervisor.driver import HostDriver
from hypervisor.specs import DhcpHost
from tests.conftest import Keys, bearer
from tests.integration.cloud import Cloud, build_cloud
from tests.integration.test_cli_keypairs import run
from tests.integration.test_volumes import create, wait_volume
from tests.unit.hypervisor.test_xml_golden import TEST_DOMAIN


@pytest.fixture
def cloud(client: TestClient, keys: Keys, test_host_uri, make_disk: Callable[..., Path]) -> Cloud:  # type: ignore[no-untyped-def]
    return build_cloud(client, keys, test_host_uri(), make_disk)


def findings(engine: sa.Engine, settings: Settings) -> list[Finding]:
    with Session(engine) as session:
        return doctor.examine(session, settings)


def test_terminating_everything_leaves_nothing(
    cloud: Cloud, engine: sa.Engine, settings: Settings
) -> None:
    launched = [cloud.launch(volumes=[{"size_mib": 8}]) for _ in range(3)]
    for instance in launched:
        cloud.wait_for(instance["id"], "running")
    kept = create(cloud, size_mib=8, instance_id=launched[0]["id"])
    wait_volume(cloud, kept["id"], "available")
    assert findings(engine, settings) == []

    for instance in launched:
        cloud.client.delete(f"/api/v1/instances/{instance['id']}", headers=bearer(cloud.admin))
    for instance in launched:
        cloud.wait_for(instance["id"], "terminated")
    cloud.client.delete(f"/api/v1/volumes/{kept['id']}", headers=bearer(cloud.admin))
    wait_volume(cloud, kept["id"], "deleted")
    assert findings(engine, settings) == []


def test_every_kind_of_difference_is_named(
    cloud: Cloud, engine: sa.Engine, settings: Settings
) -> None:
    instance = cloud.wait_for(cloud.launch()["id"], "running")
    connection = POOL.get(cloud.host_uri)
    driver = HostDriver(cloud.host_uri)
    network = f"vdc-{cloud.network_id}"
    # Behind vdc's back: a domain, a volume and a DHCP entry nobody asked for, a root disk
    # gone, an image file and a console log without rows.
    connection.defineXML(_stray_domain())
    pool = connection.storagePoolLookupByName("vdc-instances")
    pool.storageVolLookupByName(f"{instance['id']}-root.qcow2").delete(0)
    pool.createXML("<volume><name>stray.qcow2</name><capacity>1048576</capacity></volume>", 0)
    driver.add_dhcp_host(network, DhcpHost("52:54:00:00:be:ef", "10.10.0.250", "stray"))
    (settings.image_dir / "wmi-stray000.qcow2").write_bytes(b"x")
    settings.console_dir.mkdir(parents=True, exist_ok=True)
    (settings.console_dir / "i-gone0000.log").write_text("old\n")

    host = "host1"
    assert findings(engine, settings) == sorted(
        [
            Finding(host, "domain", "i-stray000", "orphan"),
            Finding(host, "volume", "vdc-instances/stray.qcow2", "orphan"),
            Finding(host, "volume", f"vdc-instances/{instance['id']}-root.qcow2", "missing"),
            Finding(host, "dhcp", f"{network}/52:54:00:00:be:ef", "orphan"),
            Finding("data dir", "image file", "wmi-stray000.qcow2", "orphan"),
            Finding("data dir", "console log", "i-gone0000.log", "orphan"),
        ]
    )
    # The operator's command fails so that scripts notice. (It runs in its own process,
    # where a test:// host starts empty: only the data dir's findings are the same.)
    result = run("--json", settings=settings, check=False, group="doctor")
    assert result.returncode == 1
    assert '"name": "wmi-stray000.qcow2"' in result.stdout
    # A DHCP entry vdc needs, gone, is missing too.
    driver.remove_dhcp_host(network, instance["mac_address"])
    assert Finding(host, "dhcp", f"{network}/{instance['mac_address']}", "missing") in findings(
        engine, settings
    )


def test_what_vanishes_while_doctor_looks_is_simply_not_there(
    cloud: Cloud, engine: sa.Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A domain or a network listed by libvirt, then gone when the doctor looks at it (a
    terminate under way): not a failure of the whole host, and not a finding."""
    cloud.wait_for(cloud.launch()["id"], "running")
    connection = POOL.get(cloud.host_uri)
    connection.defineXML(_stray_domain())
    connection.networkDefineXML(
        "<network><name>vdc-nw-stray000</name><bridge name='vdcstray0'/></network>"
    )
    look_at_domain = libvirt.virDomain.metadata
    look_up_network = libvirt.virConnect.networkLookupByName

    def vanishing_domain(self: libvirt.virDomain, *args: object) -> object:
        if self.name() == "i-stray000":
            self.undefine()  # just before vdc looks at it, as a terminate does
        return look_at_domain(self, *args)

    def vanishing_network(self: libvirt.virConnect, name: str) -> object:
        if name == "vdc-nw-stray000":
            look_up_network(self, name).undefine()
        return look_up_network(self, name)

    monkeypatch.setattr(libvirt.virDomain, "metadata", vanishing_domain)
    monkeypatch.setattr(libvirt.virConnect, "networkLookupByName", vanishing_network)
    assert findings(engine, settings) == []


def test_doctor_while_instances_come_and_go(
    cloud: Cloud, engine: sa.Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Doctor run over and over while instances are terminated and launched (cron on a busy
    system): no look fails, and no row in a transition is reported missing, so every
    report is empty."""
    leaving = [cloud.launch(volumes=[{"size_mib": 8}])["id"] for _ in range(4)]
    for instance_id in leaving:
        cloud.wait_for(instance_id, "running")
    # libvirt slowed down where doctor looks and where jobs remove, so the two overlap.
    for cls, name in (
        (libvirt.virDomain, "state"),
        (libvirt.virDomain, "undefine"),
        (libvirt.virStorageVol, "delete"),
    ):
        monkeypatch.setattr(cls, name, _slowed(getattr(cls, name)))
    reports: list[list[Finding]] = []
    done = threading.Event()

    def cron() -> None:
        while not done.is_set():
            reports.append(findings(engine, settings))

    watcher = threading.Thread(target=cron)
    watcher.start()
    try:
        for instance_id in leaving:
            response = cloud.client.delete(
                f"/api/v1/instances/{instance_id}", headers=bearer(cloud.admin)
            )
            assert response.status_code == 202, response.text
        coming = [cloud.launch(volumes=[{"size_mib": 8}])["id"] for _ in range(2)]
        for instance_id in leaving:
            cloud.wait_for(instance_id, "terminated")
        for instance_id in coming:
            cloud.wait_for(instance_id, "running")
    finally:
        done.set()
        watcher.join()
    assert len(reports) >= 3
    assert [report for report in reports if report] == []
    assert findings(engine, settings) == []


def _slowed(call: Callable[..., object]) -> Callable[..., object]:
    def slow(*args: object) -> object:
        time.sleep(0.02)
        return call(*args)

    return slow


def _stray_domain() -> str:
    from dataclasses import replace

    from hypervisor import designer

    spec = replace(TEST_DOMAIN, name="i-stray000", instance_id="i-stray000", interfaces=())
    return designer.domain(spec).to_xml()

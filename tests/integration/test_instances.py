"""Instances on libvirt's test driver, through the API, on SQLite and PostgreSQL: launch,
every state transition and refusal, terminate, and what libvirt holds at each step."""

from __future__ import annotations

import base64
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import libvirt
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session

from app.config import Settings
from app.models import Network
from app.services.network import addresses
from hypervisor.connection import POOL
from hypervisor.guest import Guest
from metadata.app import create_metadata_app
from tests.conftest import Keys, bearer
from tests.integration.cloud import Cloud, build_cloud


@pytest.fixture
def cloud(client: TestClient, keys: Keys, test_host_uri, make_disk: Callable[..., Path]) -> Cloud:  # type: ignore[no-untyped-def]
    return build_cloud(client, keys, test_host_uri(), make_disk)


def dhcp_hosts(cloud: Cloud) -> dict[str, tuple[str, str | None]]:
    """MAC -> (IP, hostname) of the network's static DHCP entries ({} before it exists)."""
    names = POOL.get(cloud.host_uri).listNetworks() + POOL.get(cloud.host_uri).listDefinedNetworks()
    if f"vdc-{cloud.network_id}" not in names:
        return {}
    network = POOL.get(cloud.host_uri).networkLookupByName(f"vdc-{cloud.network_id}")
    root = ET.fromstring(network.XMLDesc(0))
    return {h.get("mac"): (h.get("ip"), h.get("name")) for h in root.iter("host")}


def domain_names(cloud: Cloud) -> set[str]:
    return {d.name() for d in POOL.get(cloud.host_uri).listAllDomains(0)}


def libvirt_state(cloud: Cloud, instance_id: str) -> int:
    """What libvirt says of the domain (VIR_DOMAIN_RUNNING, VIR_DOMAIN_SHUTOFF, ...), not vdc."""
    state, _reason = POOL.get(cloud.host_uri).lookupByName(instance_id).state()
    return int(state)


def metadata_client(engine: sa.Engine, instance: dict[str, Any]) -> TestClient:
    """The metadata service as the instance asks it: from its address, at its gateway."""
    app = create_metadata_app(engine, "vdc-1", token_secret="t" * 32)
    return TestClient(app, base_url="http://10.10.0.1:8775", client=(instance["ip_address"], 40000))


class TestLaunch:
    def test_launch_answers_pending_then_runs_with_the_address_it_reported(
        self, cloud: Cloud, settings: Settings
    ) -> None:
        launched = cloud.launch(
            hostname="web1", display_name="web server", user_data="#!/bin/sh\necho hi\n"
        )
        assert launched["state"] == "pending"
        assert launched["id"].startswith("i-")
        assert launched["mac_address"].startswith("52:54:00:")
        assert launched["ip_address"] == "10.10.0.2"  # the lowest address of the DHCP range
        assert launched["host_node_id"] == cloud.host_id
        assert launched["user_data_size"] == len("#!/bin/sh\necho hi\n")

        running = cloud.wait_for(launched["id"], "running")
        assert running["launched_at"] is not None
        # The 202 is built from what the launch made, not read back: it must say what a
        # read says, but for what the worker changed since.
        moved = {"state", "launched_at", "updated_at"}
        assert {k: v for k, v in launched.items() if k not in moved} == {
            k: v for k, v in running.items() if k not in moved
        }

        # libvirt holds exactly what the API reported: the DHCP entry, the domain, the disk.
        assert dhcp_hosts(cloud)[launched["mac_address"]] == (launched["ip_address"], "web1")
        connection = POOL.get(cloud.host_uri)
        domain = connection.lookupByName(launched["id"])
        assert domain.isActive()
        xml = ET.fromstring(domain.XMLDesc(0))
        assert xml.find("./devices/interface/mac").get("address") == launched["mac_address"]
        assert launched["id"] in domain.metadata(2, "https://vdc.invalid/xmlns/instance/1")
        volume = connection.storagePoolLookupByName("vdc-instances").storageVolLookupByName(
            f"{launched['id']}-root.qcow2"
        )
        backing = ET.fromstring(volume.XMLDesc(0)).find("./backingStore/path").text
        assert backing == str(settings.image_dir / f"{cloud.image_id}.qcow2")

    def test_explicit_size_instead_of_a_type(self, cloud: Cloud) -> None:
        launched = cloud.launch(instance_type=None, cpu_cores=2, memory_size=256)
        assert (launched["cpu_cores"], launched["memory_size"], launched["instance_type"]) == (
            2,
            256,
            None,
        )
        cloud.wait_for(launched["id"], "running")
        info = POOL.get(cloud.host_uri).lookupByName(launched["id"]).info()
        assert (info[1], info[3]) == (256 * 1024, 2)

    @pytest.mark.parametrize(
        ("body", "status", "fragment"),
        [
            ({"instance_type": "huge"}, 400, "unknown instance type"),
            ({"instance_type": None}, 422, "instance_type, or both"),
            ({"image_id": "wmi-nothere0"}, 404, "image wmi-nothere0 not found"),
            ({"network_id": "nw-nothere0"}, 404, "network nw-nothere0 not found"),
            ({"hostname": "bad_host!"}, 422, "hostname"),
            ({"user_data": "x" * (16 * 1024 + 1)}, 422, "16384 bytes"),
            ({"user_data_base64": "not base64!"}, 422, "base64"),
            # Over the 32 GiB host, within the default quota (65 cores would be over both).
            (
                {"instance_type": None, "cpu_cores": 1, "memory_size": 33000},
                409,
                "no host has room",
            ),
        ],
    )
    def test_bad_launches_are_refused_clearly(
        self, cloud: Cloud, body: dict, status: int, fragment: str
    ) -> None:
        full = {"image_id": cloud.image_id, "instance_type": "nano", **body}
        response = cloud.client.post("/api/v1/instances", json=full, headers=bearer(cloud.admin))
        assert response.status_code == status, response.text
        assert fragment in response.json()["detail"]
        assert (
            cloud.client.get("/api/v1/instances", headers=bearer(cloud.admin)).json()["total"] == 0
        )

    def test_user_data_up_to_16k_and_binary(self, cloud: Cloud, engine: sa.Engine) -> None:
        # What the guest reads back is byte for byte what was given, text or binary.
        text = "#!/bin/sh\n" + "x" * (16 * 1024 - 10)
        binary = bytes(range(256)) + b"\x1f\x8b\x08\x00\xff\xfe\r\n\x00" + bytes(1000)
        large = cloud.launch(user_data=text)
        assert large["user_data_size"] == 16 * 1024
        packed = cloud.launch(user_data_base64=base64.b64encode(binary).decode())
        assert packed["user_data_size"] == len(binary)
        for launched, expected in ((large, text.encode()), (packed, binary)):
            running = cloud.wait_for(launched["id"], "running")
            answer = metadata_client(engine, running).get("/latest/user-data")
            assert answer.status_code == 200
            assert answer.content == expected


class TestLifecycle:
    def test_stop_start_reboot_poweroff_keep_ip_and_mac(self, cloud: Cloud) -> None:
        first = cloud.wait_for(cloud.launch()["id"], "running")
        instance_id = first["id"]
        domain = POOL.get(cloud.host_uri).lookupByName(instance_id)

        assert cloud.action(instance_id, "stop").json()["state"] == "stopping"
        cloud.wait_for(instance_id, "stopped")
        assert not domain.isActive()

        assert cloud.action(instance_id, "start").json()["state"] == "starting"
        again = cloud.wait_for(instance_id, "running")
        assert domain.isActive()
        assert (again["ip_address"], again["mac_address"]) == (
            first["ip_address"],
            first["mac_address"],
        )

        assert cloud.action(instance_id, "reboot").json()["state"] == "rebooting"
        cloud.wait_for(instance_id, "running")

        assert cloud.action(instance_id, "poweroff").status_code == 202
        cloud.wait_for(instance_id, "stopped")
        assert not domain.isActive()

    def test_a_start_gives_a_domain_defined_before_screens_its_screen(self, cloud: Cloud) -> None:
        """A launch defines its domain whole and does not read it back; a start finds the
        domain defined earlier and converges it (here: one made before vdc had screens)."""
        instance_id = cloud.wait_for(cloud.launch()["id"], "running")["id"]
        connection = POOL.get(cloud.host_uri)

        def screens() -> list[str | None]:
            flags = libvirt.VIR_DOMAIN_XML_INACTIVE
            root = ET.fromstring(connection.lookupByName(instance_id).XMLDesc(flags))
            return [g.get("type") for g in root.iter("graphics")]

        assert screens() == ["vnc"]  # the launch's definition had it from the spec
        cloud.action(instance_id, "stop")
        cloud.wait_for(instance_id, "stopped")
        flags = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE
        root = ET.fromstring(connection.lookupByName(instance_id).XMLDesc(flags))
        devices = root.find("devices")
        assert devices is not None
        for node in [*devices.findall("graphics"), *devices.findall("video")]:
            devices.remove(node)
        connection.defineXML(ET.tostring(root, encoding="unicode"))
        assert screens() == []

        cloud.action(instance_id, "start")
        cloud.wait_for(instance_id, "running")
        assert screens() == ["vnc"]

    def test_stop_asks_the_guest_to_shut_down_and_its_domain_is_off(
        self, cloud: Cloud, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        instance_id = cloud.wait_for(cloud.launch()["id"], "running")["id"]
        asked: list[str] = []
        acpi_shutdown = Guest.shutdown

        def shutdown(guest: Guest) -> None:
            asked.append(guest.name)
            acpi_shutdown(guest)  # the test driver's guest obeys at once

        monkeypatch.setattr(Guest, "shutdown", shutdown)
        assert cloud.action(instance_id, "stop").status_code == 202
        stopped = cloud.wait_for(instance_id, "stopped")
        # libvirt's word, not vdc's: the domain really is off.
        assert libvirt_state(cloud, instance_id) == libvirt.VIR_DOMAIN_SHUTOFF
        assert asked == [instance_id]
        assert stopped["state_reason"] == ""  # it shut down when asked: nothing was forced

    def test_a_guest_that_ignores_acpi_is_forced_off_after_the_stop_timeout(
        self, cloud: Cloud, settings: Settings, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        instance_id = cloud.wait_for(cloud.launch()["id"], "running")["id"]
        ignored: list[str] = []
        monkeypatch.setattr(Guest, "shutdown", lambda guest: ignored.append(guest.name))
        asked_at = time.monotonic()
        assert cloud.action(instance_id, "stop").status_code == 202
        stopped = cloud.wait_for(instance_id, "stopped", timeout=settings.stop_timeout + 60)
        assert time.monotonic() - asked_at >= settings.stop_timeout  # it waited for the guest
        assert ignored == [instance_id]
        assert libvirt_state(cloud, instance_id) == libvirt.VIR_DOMAIN_SHUTOFF
        assert stopped["state_reason"] == (
            f"forced off: the guest did not shut down within {settings.stop_timeout:g}s"
        )
        # Off for good: started again, it runs, and a stop that is obeyed says nothing forced.
        monkeypatch.undo()
        assert cloud.action(instance_id, "start").status_code == 202
        assert cloud.wait_for(instance_id, "running")["state_reason"] == ""
        assert libvirt_state(cloud, instance_id) == libvirt.VIR_DOMAIN_RUNNING

    def test_actions_in_the_wrong_state_are_409(self, cloud: Cloud) -> None:
        instance_id = cloud.wait_for(cloud.launch()["id"], "running")["id"]
        refused = cloud.action(instance_id, "start")
        assert refused.status_code == 409
        assert "while it is running" in refused.json()["detail"]
        cloud.action(instance_id, "stop")
        cloud.wait_for(instance_id, "stopped")
        for action in ("stop", "reboot", "poweroff"):
            assert cloud.action(instance_id, action).status_code == 409, action

    def test_terminate_removes_domain_disk_dhcp_entry_and_lease(
        self, cloud: Cloud, engine: sa.Engine
    ) -> None:
        launched = cloud.wait_for(cloud.launch()["id"], "running")
        instance_id = launched["id"]
        deleted = cloud.client.delete(
            f"/api/v1/instances/{instance_id}", headers=bearer(cloud.admin)
        )
        assert deleted.status_code == 202 and deleted.json()["state"] == "shuttingdown"
        gone = cloud.wait_for(instance_id, "terminated")
        assert gone["terminated_at"] is not None
        assert gone["ip_address"] is None and gone["interfaces"] == []
        assert instance_id not in domain_names(cloud)
        assert launched["mac_address"] not in dhcp_hosts(cloud)
        pool = POOL.get(cloud.host_uri).storagePoolLookupByName("vdc-instances")
        assert f"{instance_id}-root.qcow2" not in pool.listVolumes()
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM network_interfaces")).scalar() == 0
        # Terminating again changes nothing, and the address is handed out again.
        assert (
            cloud.client.delete(
                f"/api/v1/instances/{instance_id}", headers=bearer(cloud.admin)
            ).status_code
            == 202
        )
        assert cloud.launch()["ip_address"] == launched["ip_address"]

    def test_terminate_while_pending_leaves_nothing(self, cloud: Cloud) -> None:
        instance_id = cloud.launch()["id"]
        cloud.client.delete(f"/api/v1/instances/{instance_id}", headers=bearer(cloud.admin))
        cloud.wait_for(instance_id, "terminated")
        assert instance_id not in domain_names(cloud)
        assert dhcp_hosts(cloud) == {}

    def test_a_guest_that_powers_itself_off_is_seen_stopped(self, cloud: Cloud) -> None:
        instance_id = cloud.wait_for(cloud.launch()["id"], "running")["id"]
        POOL.get(cloud.host_uri).lookupByName(instance_id).destroy()  # as if the guest ran poweroff
        stopped = cloud.wait_for(instance_id, "stopped")
        assert "powered itself off" in stopped["state_reason"]

    def test_console_output(self, cloud: Cloud, settings: Settings) -> None:
        instance_id = cloud.wait_for(cloud.launch()["id"], "running")["id"]

        def console() -> dict[str, Any]:
            response = cloud.client.get(
                f"/api/v1/instances/{instance_id}/console", headers=bearer(cloud.admin)
            )
            assert response.status_code == 200, response.text
            return dict(response.json())

        assert console() == {"instance_id": instance_id, "output": "", "truncated": False}
        # On a real host virtlogd writes this file (in the console pool's folder, which
        # libvirt makes); the test driver runs no guest and makes no folder.
        settings.console_dir.mkdir(parents=True, exist_ok=True)
        log = settings.console_dir / f"{instance_id}.log"
        log.write_bytes(b"Booting\xff\nlogin: ")
        assert console() == {
            "instance_id": instance_id,
            "output": "Booting\ufffd\nlogin: ",
            "truncated": False,
        }
        # Exactly 64 KiB is all of it; one byte more and the answer says it was cut.
        tail = b"".join(b"line %05d\n" % n for n in range(6554))[: 64 * 1024]
        log.write_bytes(tail)
        assert (console()["output"], console()["truncated"]) == (tail.decode(), False)
        log.write_bytes(b"the first boot, long gone\n" * 100 + tail)
        cut = console()
        assert cut["truncated"] is True
        assert cut["output"] == tail.decode()  # the last 64 KiB, to the byte

    def test_an_image_cannot_be_deleted_while_an_instance_stands_on_it(
        self, cloud: Cloud, settings: Settings
    ) -> None:
        instance_id = cloud.wait_for(cloud.launch()["id"], "running")["id"]
        image_url = f"/api/v1/images/{cloud.image_id}"
        image_file = settings.image_dir / f"{cloud.image_id}.qcow2"
        for state in ("running", "stopped"):  # its root disk is an overlay on the image
            if state == "stopped":
                cloud.action(instance_id, "stop")
                cloud.wait_for(instance_id, "stopped")
            refused = cloud.client.delete(image_url, headers=bearer(cloud.admin))
            assert refused.status_code == 409, (state, refused.text)
            assert instance_id in refused.json()["detail"]
            assert cloud.client.get(image_url, headers=bearer(cloud.admin)).status_code == 200
            assert image_file.exists()
        # ...and the instance still starts from it.
        assert cloud.action(instance_id, "start").status_code == 202
        cloud.wait_for(instance_id, "running")


class TestListing:
    def test_filters_and_tenancy(self, cloud: Cloud) -> None:
        alice, bob = cloud.keys.new("alice"), cloud.keys.new("bob")
        mine = cloud.launch(alice)
        cloud.wait_for(mine["id"], "running", key=alice)
        theirs = cloud.launch(bob)
        assert [
            i["id"]
            for i in cloud.client.get("/api/v1/instances", headers=bearer(alice)).json()["items"]
        ] == [mine["id"]]
        for method, suffix in (
            ("get", ""),
            ("delete", ""),
            ("post", "/stop"),
            ("get", "/console"),
            ("patch", ""),
        ):
            kwargs = {"json": {"display_name": "x"}} if method == "patch" else {}
            response = getattr(cloud.client, method)(
                f"/api/v1/instances/{theirs['id']}{suffix}", headers=bearer(alice), **kwargs
            )
            assert response.status_code == 404, (method, suffix)
        everyone = cloud.client.get(
            "/api/v1/instances", params={"state": "running"}, headers=bearer(cloud.admin)
        ).json()
        assert mine["id"] in [i["id"] for i in everyone["items"]]
        by_host = cloud.client.get(
            "/api/v1/instances", params={"host_node_id": cloud.host_id}, headers=bearer(cloud.admin)
        )
        assert by_host.json()["total"] == 2
        assert (
            cloud.client.get(
                "/api/v1/instances", params={"state": "bogus"}, headers=bearer(alice)
            ).status_code
            == 422
        )


def dhcp_range(cloud: Cloud, name: str, prefix: str, first: int, last: int) -> str:
    """A /24 network whose DHCP range is PREFIX.FIRST - PREFIX.LAST; its id."""
    made = cloud.client.post(
        "/api/v1/networks",
        json={
            "name": name,
            "cidr": f"{prefix}.0/24",
            "dhcp_start": f"{prefix}.{first}",
            "dhcp_end": f"{prefix}.{last}",
        },
        headers=bearer(cloud.admin),
    )
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


class TestAddresses:
    def test_a_three_address_range_fills_to_its_last_address_and_a_terminate_frees_one(
        self, cloud: Cloud
    ) -> None:
        network_id = dhcp_range(cloud, "tiny", "10.40.0", 10, 12)

        launched = [cloud.launch(network_id=network_id) for _ in range(3)]
        assert [i["ip_address"] for i in launched] == ["10.40.0.10", "10.40.0.11", "10.40.0.12"]
        for instance in launched:  # the last address of the range works on the host too
            cloud.wait_for(instance["id"], "running")
        network = POOL.get(cloud.host_uri).networkLookupByName(f"vdc-{network_id}")
        entries = {h.get("ip") for h in ET.fromstring(network.XMLDesc(0)).iter("host")}
        assert entries == {"10.40.0.10", "10.40.0.11", "10.40.0.12"}

        # The range is full: the next launch is refused, naming it, and creates nothing.
        full = cloud.client.post(
            "/api/v1/instances",
            json={"image_id": cloud.image_id, "instance_type": "nano", "network_id": network_id},
            headers=bearer(cloud.admin),
        )
        assert full.status_code == 409, full.text
        assert full.json()["detail"] == (
            f"network {network_id} has no free address left in 10.40.0.10 - 10.40.0.12"
        )
        listed = cloud.client.get("/api/v1/instances", headers=bearer(cloud.admin)).json()
        assert listed["total"] == 3

        # A terminate frees its address, and the next launch gets exactly that one.
        cloud.client.delete(f"/api/v1/instances/{launched[1]['id']}", headers=bearer(cloud.admin))
        cloud.wait_for(launched[1]["id"], "terminated")
        again = cloud.launch(network_id=network_id)
        assert again["ip_address"] == "10.40.0.11"
        cloud.wait_for(again["id"], "running")

    def test_the_next_address_follows_the_highest_and_a_freed_one_waits_for_the_top(
        self, cloud: Cloud, engine: sa.Engine
    ) -> None:
        network_id = dhcp_range(cloud, "five", "10.41.0", 10, 14)
        first = [cloud.launch(network_id=network_id) for _ in range(3)]
        assert [i["ip_address"] for i in first] == ["10.41.0.10", "10.41.0.11", "10.41.0.12"]
        cloud.client.delete(f"/api/v1/instances/{first[1]['id']}", headers=bearer(cloud.admin))
        cloud.wait_for(first[1]["id"], "terminated")

        # .11 is free again, but the range has addresses above the highest in use.
        then = [cloud.launch(network_id=network_id)["ip_address"] for _ in range(2)]
        assert then == ["10.41.0.13", "10.41.0.14"]
        # The range's last address is taken: now the gap.
        assert cloud.launch(network_id=network_id)["ip_address"] == "10.41.0.11"
        full = cloud.client.post(
            "/api/v1/instances",
            json={"image_id": cloud.image_id, "instance_type": "nano", "network_id": network_id},
            headers=bearer(cloud.admin),
        )
        assert full.status_code == 409, full.text

        # Each lease's number is its address (the index the choice reads).
        with engine.connect() as connection:
            leases = connection.execute(
                sa.text(
                    "SELECT ip_address, ip_number FROM network_interfaces WHERE network_id = :n"
                ),
                {"n": network_id},
            ).all()
        assert len(leases) == 5
        for address, number in leases:
            assert number == int.from_bytes(bytes(int(p) for p in address.split(".")), "big")

    def test_once_the_top_is_taken_the_gaps_are_used_lowest_first(
        self, cloud: Cloud, engine: sa.Engine
    ) -> None:
        network_id = dhcp_range(cloud, "eight", "10.42.0", 10, 17)
        launched = {
            i["ip_address"]: i["id"]
            for i in (cloud.launch(network_id=network_id) for _ in range(8))
        }
        assert sorted(launched, key=lambda a: int(a.rsplit(".", 1)[1]))[-1] == "10.42.0.17"
        freed = ["10.42.0.16", "10.42.0.10", "10.42.0.14", "10.42.0.13"]
        for address in freed:
            cloud.client.delete(
                f"/api/v1/instances/{launched[address]}", headers=bearer(cloud.admin)
            )
            cloud.wait_for(launched[address], "terminated")

        # Each gap's first address, lowest first: the range's own first one among them.
        with Session(engine) as session:
            network = session.get(Network, network_id)
            assert network is not None
            assert addresses.free_addresses(session, network, 32) == [
                "10.42.0.10",
                "10.42.0.13",
                "10.42.0.16",
            ]
            assert addresses.free_addresses(session, network, 2) == ["10.42.0.10", "10.42.0.13"]
        again = [cloud.launch(network_id=network_id)["ip_address"] for _ in range(4)]
        assert again == ["10.42.0.10", "10.42.0.13", "10.42.0.14", "10.42.0.16"]
        full = cloud.client.post(
            "/api/v1/instances",
            json={"image_id": cloud.image_id, "instance_type": "nano", "network_id": network_id},
            headers=bearer(cloud.admin),
        )
        assert full.status_code == 409, full.text

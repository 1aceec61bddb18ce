"""The seed's "hard way", inside vdc, with real guests: an installer ISO (made by the test
suite: tests/e2e/guest/installer_iso.py) boots on a blank 1 GiB disk, installs the test
guest onto it and powers off (the instance ends `stopped` by itself); the instance is
captured as an image (`prepare: false`) and that image boots from its disk, gets its
address and reads its metadata. The installer's CD is ejected in the real domain, and the
installed instance then boots its disk too.
"""

from __future__ import annotations

import re
import subprocess
import time
import xml.etree.ElementTree as ET
from typing import Any

from tests.e2e.conftest import CACHE
from tests.e2e.guest.installer_iso import build_installer_iso
from tests.e2e.harness import E2E
from tests.e2e.test_metadata_e2e import READ_METADATA

GIB = 1024**3


def cdrom(e2e: E2E, instance_id: str, *, live: bool) -> ET.Element:
    """The domain's CD-ROM drive as libvirt has it (the running guest's, or the next boot's)."""
    args = ("dumpxml", instance_id) if live else ("dumpxml", "--inactive", instance_id)
    root = ET.fromstring(e2e.virsh(*args))
    (drive,) = root.findall("./devices/disk[@device='cdrom']")
    return drive


def wait_image(e2e: E2E, image_id: str, timeout: float = 300) -> dict[str, Any]:
    """The image once it is no longer creating."""
    deadline = time.monotonic() + timeout
    while (image := e2e.get(f"/api/v1/images/{image_id}"))["state"] == "creating":
        assert time.monotonic() < deadline, image
        time.sleep(0.3)
    return dict(image)


def test_install_from_an_iso_capture_it_and_boot_the_image(e2e: E2E) -> None:
    assert e2e.api is not None
    iso_path = build_installer_iso(CACHE / "guest")
    with iso_path.open("rb") as body:
        uploaded = e2e.api.post(
            "/api/v1/images",
            params={"arch": "x86_64", "display_name": "e2e installer"},
            content=body,
            headers={"Content-Type": "application/octet-stream"},
        )
    assert uploaded.status_code == 201, uploaded.text
    iso = uploaded.json()
    assert (iso["kind"], iso["format"]) == ("iso", "raw")

    installer = e2e.launch(image_id=iso["id"], root_disk_size=1, hostname="e2e-installer")
    e2e.wait_console(installer["id"], r"VDC-INSTALL installed", timeout=240)
    stopped = e2e.wait_state(installer["id"], "stopped", timeout=120)  # it powered off
    assert stopped["state_reason"] == "the guest powered itself off"
    drive = cdrom(e2e, installer["id"], live=False)
    assert drive.find("source").get("file", "").endswith(f"/{iso['id']}.iso")  # type: ignore[union-attr]
    assert drive.find("readonly") is not None

    captured = e2e.post(
        f"/api/v1/instances/{installer['id']}/image",
        display_name="installed from the e2e ISO",
        prepare=False,
    )
    assert (captured["state"], captured["progress"]) == ("creating", 0)
    image = wait_image(e2e, captured["id"])
    assert image["state"] == "available", image
    assert (image["format"], image["kind"], image["progress"]) == ("qcow2", "disk", 100)
    assert image["virtual_size"] == GIB and 0 < image["file_size"] < 64 * 1024**2
    stored = e2e.data_dir / "images" / f"{image['id']}.qcow2"
    info = subprocess.run(
        ["qemu-img", "info", "--output=json", str(stored)], capture_output=True, text=True
    ).stdout
    assert "backing-filename" not in info  # standalone: the image it came from is no base
    assert "-capture.qcow2" not in e2e.virsh("vol-list", "vdc-instances")

    # Eject: the next boot's definition first (the guest is off), then its live drive.
    ejected = e2e.post(f"/api/v1/instances/{installer['id']}/eject")
    assert ejected["cdrom_image_id"] is None
    deadline = time.monotonic() + 60
    while cdrom(e2e, installer["id"], live=False).find("source") is not None:
        assert time.monotonic() < deadline, "the CD is still in the drive"
        time.sleep(0.3)
    e2e.action(installer["id"], "start")
    relaunched = e2e.launch(image_id=image["id"], hostname="e2e-installed", user_data="from iso")

    # The installed instance boots its disk (the installer would say VDC-INSTALL again).
    e2e.wait_state(installer["id"], "running")
    e2e.wait_console(installer["id"], r"VDC-E2E net ip=", timeout=180)
    assert "VDC-INSTALL" not in e2e.console(installer["id"])
    assert cdrom(e2e, installer["id"], live=True).find("source") is None

    # The captured image boots, gets its address and reads its metadata.
    running = e2e.wait_state(relaunched["id"], "running")
    net = e2e.wait_network(relaunched)
    assert net.group(1) == running["ip_address"]
    e2e.wait_console(relaunched["id"], r"VDC-E2E disks vda:2097152:", timeout=30)  # 1 GiB
    rc, output = e2e.run_in_guest(relaunched["id"], running["ip_address"], READ_METADATA)
    assert rc == 0, output
    seen = dict(re.findall(r"META ([^=]+)=(.*)", output))
    assert seen["instance-id"] == relaunched["id"]
    assert seen["local-ipv4"] == running["ip_address"]
    assert seen["wmi-id"] == image["id"]
    assert seen["hostname"] == "e2e-installed"
    assert seen["user-data"] == "from iso"

    for instance_id in (installer["id"], relaunched["id"]):
        e2e.terminate(instance_id)
    for instance_id in (installer["id"], relaunched["id"]):
        e2e.wait_state(instance_id, "terminated")
    for image_id in (image["id"], iso["id"]):
        assert e2e.api.delete(f"/api/v1/images/{image_id}").status_code == 204

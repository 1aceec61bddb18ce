"""A minimal systemd distribution through vdc, as the seed's reader would bring one: Debian
bookworm minbase with systemd and networkd, cloud-init absent, and no curl, wget, busybox or
python3 (tests/e2e/guest/systemd_disk.py). `vdc-manage image prepare --install-init
--register` says vdc-init will talk HTTP through bash, and the launched guest's own report
shows the hostname, the key pair and the user-data it got that way from vdc's metadata
service.

Costs here: the disk is built once per machine (64-115 s, then cached), prepare about 50 s,
the boot to the guest's report about 60 s under emulation.
"""

from __future__ import annotations

import re
import shutil

from tests.e2e.conftest import CACHE
from tests.e2e.guest import systemd_disk
from tests.e2e.harness import E2E

USER_DATA = """#!/bin/sh
echo "user-data ran as $(id -u) on $(hostname)" >> /var/tmp/user-data-proof
"""


def report(console: str, key: str) -> list[str]:
    """The values of the guest's `VDC-E2E report KEY ...` lines, in order (systemd may put
    the unit's name before a line it copies to the console)."""
    return [value.strip() for value in re.findall(rf"VDC-E2E report {key}[ =]([^\n]*)", console)]


def test_minimal_systemd_guest_is_set_up_by_vdc_init_over_bash(e2e: E2E) -> None:
    assert e2e.api is not None
    imports = e2e.data_dir / "import"
    raw = imports / "minimal-systemd.raw"
    shutil.copyfile(systemd_disk.build_systemd_disk(CACHE / "guest"), raw)

    output = e2e.manage(
        "image", "prepare", str(raw), "--install-init", "--convert", "qcow2",
        "--register", "--arch", "x86_64", "--description", "minimal systemd",
    )  # fmt: skip
    *printed, image_id = output.splitlines()
    prepared = "\n".join(printed)
    assert image_id.startswith("wmi-"), output
    assert "note: vdc-init will use bash (/dev/tcp, HTTP/1.0), started by systemd" in prepared
    assert "enabled /etc/systemd/system/vdc-init.service" in prepared
    assert "warning:" not in prepared  # networkd brings eth0 up by DHCP: nothing to warn of

    pair = e2e.api.post("/api/v1/ssh_key_pairs/generate", json={"name": "minimal"}).json()
    instance = e2e.launch(
        image_id=image_id,
        instance_type=None,
        cpu_cores=1,
        memory_size=512,
        hostname="tiny-systemd",
        ssh_key_id=pair["id"],
        user_data=USER_DATA,
    )
    running = e2e.wait_state(instance["id"], "running")
    e2e.wait_console(instance["id"], r"VDC-E2E ready", timeout=420)
    console = e2e.console(instance["id"]).replace("\r", "")

    assert "vdc-init: using bash (/dev/tcp, HTTP/1.0)" in console
    assert report(console, "http") == ["bash"]
    assert report(console, "tools") == ["-"]  # none of curl, wget, busybox, python3, nc
    assert report(console, "vdc-init") == ["active"]
    hostname, addresses = report(console, "hostname")[0].split(" addresses=")
    assert hostname == "tiny-systemd"
    assert running["ip_address"] in addresses.split(",")
    assert report(console, "key") == [pair["public_key"]]
    assert report(console, "user-data") == ["user-data ran as 0 on tiny-systemd"]
    e2e.terminate(instance["id"])
    e2e.wait_state(instance["id"], "terminated")

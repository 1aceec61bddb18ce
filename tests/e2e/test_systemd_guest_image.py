"""The minimal systemd guest (tests/e2e/guest/systemd_disk.py): a Debian bookworm minbase
with systemd whose only way to talk HTTP is bash's /dev/tcp, built (and cached) here and read
back without mounting it. tests/e2e/test_minimal_systemd_e2e.py boots it through vdc;
`python -m tests.e2e.guest.systemd_smoke` boots it under plain qemu, by hand.

Costs on the 2-core development machine (shared): 64-115 s to build (debootstrap is most
of it), 3 s when cached.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import CACHE
from tests.e2e.guest import systemd_disk

ROOT = Path(__file__).resolve().parents[2]


def _missing() -> str:
    if os.geteuid() != 0:
        return "the systemd guest is built as root (debootstrap, chroot)"
    for tool in ("unshare", "qemu-system-x86_64", "debugfs", "sfdisk"):
        if shutil.which(tool) is None:
            return f"the systemd guest needs {tool} (make test installs it)"
    return ""


@pytest.fixture(scope="module")
def disk() -> Path:
    missing = _missing()
    if missing:
        print(f"skipped: {missing}")
        pytest.skip(missing)
    return systemd_disk.build_systemd_disk(CACHE / "guest")


def debugfs(disk: Path, command: str) -> str:
    """One read-only debugfs command on the root filesystem (partition 2)."""
    offset = systemd_disk.ROOT_START * systemd_disk.SECTOR
    result = subprocess.run(
        ["debugfs", "-R", command, f"{disk}?offset={offset}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def test_minimal_systemd_disk_has_systemd_and_bash_and_no_other_http_client(disk: Path) -> None:
    table = subprocess.run(
        ["sfdisk", "--dump", str(disk)], capture_output=True, text=True, check=True
    ).stdout
    assert "start=        2048, size=       49152, type=6, bootable" in table
    assert f"start=       {systemd_disk.ROOT_START}," in table

    usr_bin = debugfs(disk, "ls -p /usr/bin").splitlines()
    names = {line.split("/")[5] for line in usr_bin if line.count("/") >= 6}
    assert {"bash", "systemctl", "hostname", "timeout", "sed", "grep"} <= names
    for folder in ("/usr/bin", "/usr/sbin"):
        listed = {
            line.split("/")[5] for line in debugfs(disk, f"ls -p {folder}").splitlines() if line
        }
        assert not listed & set(systemd_disk.ABSENT), folder
    assert "cloud" not in debugfs(disk, "ls -p /etc")

    init = debugfs(disk, "stat /usr/lib/systemd/systemd")
    assert "Type: regular" in init
    assert "Size: 0" in debugfs(disk, "stat /etc/machine-id")
    network = debugfs(disk, "cat /etc/systemd/network/10-vdc-dhcp.network")
    assert "Name=eth0" in network and "DHCP=yes" in network
    wants = debugfs(disk, "ls /etc/systemd/system/multi-user.target.wants")
    assert "systemd-networkd.service" in wants and "vdc-e2e-report.service" in wants
    assert "vdc-init" not in wants  # image prepare --install-init's work
    online = debugfs(disk, "ls /etc/systemd/system/network-online.target.wants")
    assert "systemd-networkd-wait-online.service" in online
    modules = debugfs(disk, "ls /usr/lib/modules")
    assert "-cloud-amd64" in modules

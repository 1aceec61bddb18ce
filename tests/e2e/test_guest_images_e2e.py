"""The seed's image preparation end to end: a used Linux disk (tests/e2e/guest/linux_disk.py)
goes through `vdc-manage image prepare --install-init --convert qcow2 --register`, every
tweak is read back out of the registered file with libguestfs, and the image boots through
vdc, where vdc-init (run from rc.local) sets the guest up from the metadata service.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

from app.guest import vdc_init_script
from tests.e2e.conftest import CACHE
from tests.e2e.guest.linux_disk import PLANTED_MAC, build_linux_disk
from tests.e2e.harness import E2E

USER_DATA = """#!/bin/sh
echo "user-data ran as $(id -u) on $(hostname)" >> /var/tmp/user-data-proof
echo VDC-E2E user-data-ran
"""

# One read-only libguestfs session: each answer follows its "== name" line.
READ_BACK = """
echo == udev
readlink /etc/udev/rules.d/70-persistent-net.rules
echo == ifcfg
cat /etc/sysconfig/network-scripts/ifcfg-eth0
echo == ssh
glob-expand /etc/ssh/ssh_host_*
echo == modules
cat /etc/modules
echo == logs
find /var/log
echo == log-sizes
filesize /var/log/messages
filesize /var/log/wtmp
filesize /var/log/apt/history.log
echo == resolv
cat /etc/resolv.conf
echo == init
checksum sha256 /usr/local/sbin/vdc-init
lstatns /usr/local/sbin/vdc-init
echo == rc.local
cat /etc/rc.local
echo == end
"""


def read_back(image: Path, fmt: str) -> dict[str, str]:
    env = os.environ | {"LIBGUESTFS_BACKEND": "direct", "LIBGUESTFS_BACKEND_SETTINGS": "force_tcg"}
    result = subprocess.run(
        ["guestfish", "--ro", f"--format={fmt}", "-a", str(image), "-i"],
        input=READ_BACK,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    sections = re.split(r"^== (\S+)\n", result.stdout, flags=re.M)[1:]
    return dict(zip(sections[::2], sections[1::2], strict=True))


def test_prepared_image_boots_and_vdc_init_sets_the_guest_up(e2e: E2E) -> None:
    assert e2e.api is not None
    imports = e2e.data_dir / "import"
    raw = imports / "busybox-linux.raw"
    shutil.copyfile(build_linux_disk(CACHE / "guest"), raw)

    output = e2e.manage(
        "image", "prepare", str(raw), "--install-init", "--nameserver", "10.111.0.1",
        "--convert", "qcow2", "--register", "--arch", "x86_64", "--is-public",
        "--description", "prepared busybox Linux",
    )  # fmt: skip
    *report, image_id = output.splitlines()
    assert image_id.startswith("wmi-")
    printed = "\n".join(report)
    assert "prepared " in printed and "vdc busybox Linux" in printed
    for change in (
        "removed /etc/udev/rules.d/70-persistent-net.rules",
        "commented out HWADDR= in /etc/sysconfig/network-scripts/ifcfg-eth0",
        "removed SSH host keys from /etc/ssh: ssh_host_ed25519_key, ssh_host_ed25519_key.pub, "
        "ssh_host_rsa_key, ssh_host_rsa_key.pub",
        "added acpiphp to /etc/modules",
        "emptied 3 log file(s): /var/log/apt/history.log, /var/log/messages, /var/log/wtmp",
        "removed 1 old log file(s): /var/log/syslog.1.gz",
        "added nameserver 10.111.0.1 to /etc/resolv.conf",
        "installed vdc-init as /usr/local/sbin/vdc-init",
        "/etc/rc.local runs vdc-init at boot",
        f"converted to qcow2: {imports / 'busybox-linux.qcow2'}",
    ):
        assert change in printed, printed

    # Every tweak, read back from the file vdc will boot (the registered qcow2).
    image = e2e.get(f"/api/v1/images/{image_id}")
    assert image["format"] == "qcow2"
    seen = read_back(e2e.data_dir / "images" / f"{image_id}.qcow2", "qcow2")
    assert seen["udev"].strip() == "/dev/null"
    assert f"#HWADDR={PLANTED_MAC}" in seen["ifcfg"]
    assert not re.search(r"^HWADDR=", seen["ifcfg"], re.M)
    assert seen["ssh"].strip() == ""
    assert "acpiphp" in seen["modules"].split()
    assert "syslog.1.gz" not in seen["logs"] and "messages" in seen["logs"]
    assert seen["log-sizes"].split() == ["0", "0", "0"]
    assert "nameserver 10.111.0.1" in seen["resolv"].splitlines()
    assert seen["init"].split()[0] == hashlib.sha256(vdc_init_script().encode()).hexdigest()
    assert "st_mode: 33261" in seen["init"]  # 0100755: a regular, executable file
    rc_local = [line for line in seen["rc.local"].splitlines() if line.strip()]
    assert rc_local[-1] == "exit 0"
    assert rc_local[-2].startswith("/usr/local/sbin/vdc-init || true")

    # The prepared image boots through vdc, and vdc-init sets it up from the metadata.
    pair = e2e.api.post("/api/v1/ssh_key_pairs/generate", json={"name": "init-key"}).json()
    instance = e2e.launch(
        image_id=image_id, hostname="e2e-init", ssh_key_id=pair["id"], user_data=USER_DATA
    )
    running = e2e.wait_state(instance["id"], "running")
    e2e.wait_network(instance, timeout=240)
    e2e.wait_console(instance["id"], r"VDC-E2E ready", timeout=180)
    console = e2e.console(instance["id"]).replace("\r", "")
    # busybox wget cannot PUT: the token came through nc, from vdc's real metadata service.
    assert (
        f"vdc-init: instance {instance['id']} (metadata at http://169.254.169.254, "
        "IMDSv2 token, wget)" in console
    )
    assert "vdc-init: hostname e2e-init; /etc/hosts: " in console
    assert f"vdc-init: first boot of {instance['id']}: one-time set-up" in console
    assert "vdc-init: public keys for root: 1 added to /root/.ssh/authorized_keys" in console
    assert "VDC-E2E user-data-ran" in console

    script = (
        "echo HOSTNAME=$(hostname); echo ETC-HOSTNAME=$(cat /etc/hostname); "
        "grep 'vdc-init' /etc/hosts; cat /root/.ssh/authorized_keys; cat /var/tmp/user-data-proof"
    )
    rc, output = e2e.run_in_guest(instance["id"], running["ip_address"], script, timeout=90)
    assert rc == 0, output
    assert "HOSTNAME=e2e-init" in output and "ETC-HOSTNAME=e2e-init" in output
    assert f"{running['ip_address']} e2e-init # vdc-init" in output
    assert pair["public_key"] in output
    assert output.count("user-data ran as 0 on e2e-init") == 1

    # A reboot keeps what was set up and does not run the one-time work again.
    e2e.action(instance["id"], "reboot")
    e2e.wait_state(instance["id"], "running")
    e2e.wait_console(instance["id"], r"VDC-E2E ready", timeout=180, count=2)
    assert f"one-time set-up of {instance['id']} already done" in e2e.console(instance["id"])
    rc, output = e2e.run_in_guest(
        instance["id"], running["ip_address"], "hostname; cat /var/tmp/user-data-proof"
    )
    assert rc == 0, output
    assert output.count("user-data ran as") == 1 and "e2e-init" in output
    e2e.terminate(instance["id"])
    e2e.wait_state(instance["id"], "terminated")

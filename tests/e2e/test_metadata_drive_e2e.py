"""A real guest launched with Wakame-vdc's metadata drive: it finds LABEL=METADATA, mounts
the vfat read-only, and reads the same instance-id, hostname, key and user-data as the API
and the metadata service say; vdc-init sets the guest up from the drive with no network;
new user-data while stopped gives a new drive at the next start; terminate leaves nothing.
"""

from __future__ import annotations

import re

from app.guest import vdc_init_script
from tests.e2e.harness import E2E

USER_DATA = "#!/bin/sh\necho user-data ran from the drive on $(hostname)\n"
READ_DRIVE = r"""
device=$(findfs LABEL=METADATA) || exit 3
echo "DRIVE device=$device"
mkdir -p /mnt/md && mount -t vfat -o ro "$device" /mnt/md || exit 4
base=http://169.254.169.254/latest
for key in instance-id local-hostname wmi-id local-ipv4 mac public-keys/0/openssh-key; do
  echo "DRIVE $key=$(cat /mnt/md/meta-data/$key)"
  echo "HTTP $key=$(wget -q -O - $base/meta-data/$key)"
done
echo "DRIVE user-data=$(tr '\n' '|' </mnt/md/user-data)"
echo "HTTP user-data=$(wget -q -O - $base/user-data | tr '\n' '|')"
echo "DRIVE macs=$(ls /mnt/md/meta-data/network/interfaces/macs)"
touch /mnt/md/written 2>/dev/null && echo "DRIVE writable=yes" || echo "DRIVE writable=no"
umount /mnt/md
"""


def vdc_init_from_the_drive() -> str:
    """vdc-init run in the guest against a root of its own, with a metadata URL where nobody
    answers: everything it sets up must come from the drive."""
    return f"""
mkdir -p /tmp/root/etc /tmp/root/root
echo 'root:x:0:0:root:/root:/bin/sh' >/tmp/root/etc/passwd
cat >/tmp/vdc-init <<'VDC_INIT_END'
{vdc_init_script()}VDC_INIT_END
VDC_INIT_ROOT=/tmp/root VDC_INIT_METADATA_URL=http://127.0.0.1:9 VDC_INIT_TRIES=1 \\
  sh /tmp/vdc-init
echo "INIT rc=$?"
echo "INIT key=$(cat /tmp/root/root/.ssh/authorized_keys)"
echo "INIT mounted=$(grep -c vdc-init/drive /proc/mounts)"
"""


def seen(output: str, kind: str) -> dict[str, str]:
    return dict(re.findall(rf"^{kind} ([^=]+)=(.*)$", output, re.M))


def test_guest_reads_its_metadata_drive_and_vdc_init_uses_it(e2e: E2E) -> None:
    assert e2e.api is not None
    pair = e2e.api.post("/api/v1/ssh_key_pairs/generate", json={"name": "e2e-drive"}).json()
    instance = e2e.launch(
        hostname="e2e-drive", user_data=USER_DATA, ssh_key_id=pair["id"], metadata_drive=True
    )
    running = e2e.wait_state(instance["id"], "running")
    assert running["metadata_drive"] is True
    e2e.wait_network(instance)
    # The guest's disks: the root disk, then the drive (serial "metadata"), 10 MiB.
    e2e.wait_console(running["id"], r"VDC-E2E disks vda:\d+:- vdb:20480:metadata\n")

    rc, output = e2e.run_in_guest(running["id"], running["ip_address"], READ_DRIVE, timeout=90)
    assert rc == 0, output
    drive, http = seen(output, "DRIVE"), seen(output, "HTTP")
    assert drive["device"] == "/dev/vdb1"
    assert drive["instance-id"] == running["id"]
    assert drive["local-hostname"] == "e2e-drive"
    assert drive["wmi-id"] == e2e.image_id
    assert drive["local-ipv4"] == running["ip_address"]
    assert drive["mac"] == running["mac_address"]
    assert drive["public-keys/0/openssh-key"] == pair["public_key"]
    assert drive["user-data"] == USER_DATA.replace("\n", "|")
    assert drive["macs"] == running["mac_address"].replace(":", "-")
    assert drive["writable"] == "no"
    assert {k: v for k, v in drive.items() if k in http} == http  # the service agrees

    rc, output = e2e.run_in_guest(
        running["id"], running["ip_address"], vdc_init_from_the_drive(), timeout=90
    )
    assert rc == 0, output
    init = seen(output, "INIT")
    assert init == {"rc": "0", "key": pair["public_key"], "mounted": "0"}, output
    assert "vdc-init: reading the metadata drive /dev/vdb1 (LABEL=METADATA)" in output
    assert f"vdc-init: instance {running['id']} (metadata drive /dev/vdb1)" in output
    assert "vdc-init: hostname e2e-drive" in output
    assert "user-data ran from the drive on e2e-drive" in output

    # New user-data while stopped: the next start brings a new drive to the guest.
    e2e.action(running["id"], "stop")
    e2e.wait_state(running["id"], "stopped")
    changed = e2e.api.patch(f"/api/v1/instances/{running['id']}", json={"user_data": "second"})
    assert changed.status_code == 200, changed.text
    e2e.action(running["id"], "start")
    e2e.wait_state(running["id"], "running")
    e2e.wait_console(running["id"], r"VDC-E2E ready\n")
    rc, output = e2e.run_in_guest(running["id"], running["ip_address"], READ_DRIVE, timeout=90)
    assert rc == 0, output
    assert seen(output, "DRIVE")["user-data"] == "second"
    assert seen(output, "HTTP")["user-data"] == "second"

    e2e.terminate(running["id"])
    e2e.wait_state(running["id"], "terminated")
    assert f"{running['id']}-metadata.img" not in e2e.virsh("vol-list", "vdc-instances")
    assert not (e2e.data_dir / "metadata-drives" / f"{running['id']}.img").exists()
    assert e2e.doctor() == (0, [])

"""A real guest reads vdc's metadata service at 169.254.169.254, with and without an
IMDSv2 token, and sees exactly what the API says about it."""

from __future__ import annotations

import re

from tests.e2e.harness import E2E

READ_METADATA = r"""
base=http://169.254.169.254/latest
for key in instance-id local-ipv4 mac hostname wmi-id public-keys/0/openssh-key; do
  echo "META $key=$(wget -q -O - $base/meta-data/$key)"
done
echo "META user-data=$(wget -q -O - $base/user-data)"
# busybox wget cannot PUT; nc can (it hangs up at the end of its input, hence the sleep).
ttl='X-aws-ec2-metadata-token-ttl-seconds: 60'
request="PUT /latest/api/token HTTP/1.0\r\n$ttl\r\n\r\n"
token=$( (printf "$request"; sleep 2) | nc 169.254.169.254 80 | tail -n 1)
echo "META token-length=${#token}"
with_token=$(wget -q -O - --header "X-aws-ec2-metadata-token: $token" $base/meta-data/instance-id)
echo "META with-token=$with_token"
"""


def test_guest_reads_its_own_metadata_over_the_link_local_address(e2e: E2E) -> None:
    assert e2e.api is not None
    pair = e2e.api.post("/api/v1/ssh_key_pairs/generate", json={"name": "e2e-key"}).json()
    instance = e2e.launch(
        hostname="e2e-meta", user_data="hello from user-data", ssh_key_id=pair["id"]
    )
    running = e2e.wait_state(instance["id"], "running")
    e2e.wait_network(instance)
    rc, output = e2e.run_in_guest(instance["id"], running["ip_address"], READ_METADATA, timeout=90)
    assert rc == 0, output
    seen = dict(re.findall(r"META ([^=]+)=(.*)", output))
    assert seen["instance-id"] == running["id"]
    assert seen["local-ipv4"] == running["ip_address"]
    assert seen["mac"] == running["mac_address"]
    assert seen["hostname"] == "e2e-meta"
    assert seen["wmi-id"] == e2e.image_id
    assert seen["public-keys/0/openssh-key"] == pair["public_key"]
    assert seen["user-data"] == "hello from user-data"
    assert int(seen["token-length"]) > 20
    assert seen["with-token"] == running["id"]
    e2e.terminate(instance["id"])
    e2e.wait_state(instance["id"], "terminated")


def test_guest_dmi_identity_looks_like_ec2(e2e: E2E) -> None:
    """cloud-init's ds-identify picks its EC2 datasource from these two DMI values."""
    instance = e2e.launch(hostname="e2e-dmi")
    running = e2e.wait_state(instance["id"], "running")
    e2e.wait_network(instance)
    script = (
        "echo DMI $(cat /sys/class/dmi/id/product_uuid) $(cat /sys/class/dmi/id/product_serial)"
    )
    rc, output = e2e.run_in_guest(instance["id"], running["ip_address"], script)
    assert rc == 0, output
    uuid, serial = re.search(r"DMI (\S+) (\S+)", output).groups()  # type: ignore[union-attr]
    assert uuid.lower().startswith("ec2") and uuid.lower() == serial.lower()
    e2e.terminate(instance["id"])
    e2e.wait_state(instance["id"], "terminated")

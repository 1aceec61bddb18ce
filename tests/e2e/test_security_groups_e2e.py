"""Security groups and anti-spoofing on real guests: each interface's libvirt nwfilter
(clean-traffic plus the groups' rules), seen from inside the guests.

Three guests: A serves tcp 8080 to the members of one group; B is a member (and accepts
ICMP from anywhere); C is not, and shares only a group of peers (like `default`) with B.
How much reached B is read from B's own ICMP counters (/proc/net/snmp InEchos); whether
the metadata service saw a request, from the packet counter of its DNAT rule. Last, C runs
a DHCP server of its own: B still gets its address from vdc's dnsmasq, and C's filter
counts the DHCP packets it dropped.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.e2e.harness import E2E

GATEWAY = "10.111.0.1"


def make_group(e2e: E2E, name: str, rules_text: str) -> dict[str, Any]:
    assert e2e.api is not None
    response = e2e.api.post(
        "/api/v1/security_groups", json={"name": name, "rules_text": rules_text}
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def echoes_received(e2e: E2E, guest: dict[str, Any]) -> int:
    """ICMP echo requests the guest's kernel has received since it booted."""
    rc, output = e2e.run_in_guest(guest["id"], guest["ip_address"], "grep '^Icmp:' /proc/net/snmp")
    assert rc == 0, output
    header, values = (line.split()[1:] for line in output.strip().splitlines()[:2])
    return int(dict(zip(header, values, strict=True))["InEchos"])


def metadata_packets(e2e: E2E) -> int:
    """Packets that reached the metadata service's DNAT rule (169.254.169.254:80)."""
    table = e2e.in_namespace("iptables", "-t", "nat", "-L", "PREROUTING", "-v", "-x", "-n")
    line = next(line for line in table.splitlines() if "169.254.169.254" in line)
    return int(line.split()[0])


def fetch(e2e: E2E, guest: dict[str, Any], url: str) -> str:
    script = f'echo "GOT $(timeout 6 wget -q -O - {url} 2>/dev/null)"'
    rc, output = e2e.run_in_guest(guest["id"], guest["ip_address"], script, timeout=90)
    assert rc == 0, output
    return re.search(r"GOT (.*)", output).group(1).strip()  # type: ignore[union-attr]


def test_spoofing_is_blocked_and_groups_decide_who_gets_in(e2e: E2E) -> None:
    assert e2e.api is not None
    peers = make_group(e2e, "e2e-peers", "")
    peers = dict(
        e2e.api.patch(
            f"/api/v1/security_groups/{peers['id']}",
            json={"rules_text": f"any:-1,-1,{peers['id']}"},
        ).json()
    )
    assert peers["rules_text"] == f"any:-1,-1,{peers['id']}\n"
    members = make_group(e2e, "e2e-members", "icmp:-1,-1,ip4:0.0.0.0/0")
    server = make_group(e2e, "e2e-server", f"tcp:8080,8080,{members['id']}")
    wanted = {
        "a": [server["id"]],
        "b": [members["id"], peers["id"]],
        "c": [peers["id"]],
    }
    with ThreadPoolExecutor(3) as pool:
        launched = dict(
            zip(
                wanted,
                pool.map(
                    lambda name: e2e.launch(
                        hostname=f"e2e-sg-{name}", security_group_ids=wanted[name]
                    ),
                    wanted,
                ),
                strict=True,
            )
        )
    for instance in launched.values():
        e2e.wait_state(instance["id"], "running")
        e2e.wait_network(instance)
    a, b, c = launched["a"], launched["b"], launched["c"]
    url = f"http://{a['ip_address']}:8080/index.html"

    # --- (3) tcp 8080 on A: members only, until a rule lets C in --------------------------
    rc, output = e2e.run_in_guest(
        a["id"],
        a["ip_address"],
        "mkdir -p /www && echo served-by-a > /www/index.html && httpd -p 8080 -h /www && echo UP",
    )
    assert rc == 0 and "UP" in output, output
    assert fetch(e2e, b, url) == "served-by-a"
    assert fetch(e2e, c, url) == ""
    # B and C reach each other through "peers": their filters match the host's set of the
    # group's member addresses, which holds theirs and not A's.
    listed = e2e.in_namespace("ipset", "list", f"vdc-{peers['id']}").split()
    assert {b["ip_address"], c["ip_address"]} <= set(listed), listed
    assert a["ip_address"] not in listed, listed
    rc, output = e2e.run_in_guest(
        b["id"],
        b["ip_address"],
        "mkdir -p /www && echo served-by-b > /www/index.html && httpd -p 8081 -h /www && echo UP",
    )
    assert rc == 0 and "UP" in output, output
    peer_url = f"http://{b['ip_address']}:8081/index.html"
    assert fetch(e2e, c, peer_url) == "served-by-b"  # a peer: in the set
    assert fetch(e2e, a, peer_url) == ""  # no peer: B's groups admit only ICMP from it
    opened = e2e.api.patch(
        f"/api/v1/security_groups/{server['id']}",
        json={
            "rules_text": f"tcp:8080,8080,{members['id']}\ntcp:8080,8080,ip4:{c['ip_address']}/32"
        },
    )
    assert opened.status_code == 200, opened.text
    changed_at = time.monotonic()
    while fetch(e2e, c, url) != "served-by-a":
        assert time.monotonic() - changed_at < 30, "the new rule did not reach A in 30 s"
    assert e2e.virsh("domstate", a["id"]).strip() == "running"  # applied live

    # --- (1) C sends from A's address: neither B nor the metadata service sees it ---------
    echoes, metadata = echoes_received(e2e, b), metadata_packets(e2e)
    spoof = f"""
ip addr add {a["ip_address"]}/32 dev eth0
ping -c 3 -W 2 -I {a["ip_address"]} {b["ip_address"]} >/dev/null 2>&1
ip route add 169.254.169.254/32 via {GATEWAY} dev eth0 src {a["ip_address"]}
echo "SPOOFED $(timeout 6 wget -q -O - http://169.254.169.254/latest/meta-data/instance-id)"
ip route del 169.254.169.254/32
ip addr del {a["ip_address"]}/32 dev eth0
"""
    rc, output = e2e.run_in_guest(c["id"], c["ip_address"], spoof, timeout=90)
    assert rc == 0, output
    assert re.search(r"SPOOFED\s*$", output, re.M), output  # no answer from the service
    assert echoes_received(e2e, b) == echoes, "B received pings sent from a forged address"
    assert metadata_packets(e2e) == metadata, "the metadata service saw a forged address"
    # C's own address keeps working, to B and to the metadata service.
    rc, output = e2e.run_in_guest(c["id"], c["ip_address"], f"ping -c 3 -W 2 {b['ip_address']}")
    assert rc == 0, output
    assert echoes_received(e2e, b) == echoes + 3
    assert fetch(e2e, c, "http://169.254.169.254/latest/meta-data/instance-id") == c["id"]

    # --- (2) C with another MAC address is blocked the same way --------------------------
    echoes, metadata = echoes_received(e2e, b), metadata_packets(e2e)
    mac = c["mac_address"]
    forged_mac = f"""
ip link set eth0 address 52:54:00:de:ad:01
ping -c 3 -W 2 {b["ip_address"]} >/dev/null 2>&1; echo "FORGED-PING rc=$?"
echo "FORGED-META $(timeout 6 wget -q -O - http://169.254.169.254/latest/meta-data/instance-id)"
ip link set eth0 address {mac}
ping -c 3 -W 2 {b["ip_address"]} >/dev/null 2>&1; echo "OWN-PING rc=$?"
"""
    rc, output = e2e.run_in_guest(c["id"], c["ip_address"], forged_mac, timeout=90)
    assert rc == 0, output
    assert "FORGED-PING rc=1" in output, output
    assert re.search(r"FORGED-META\s*$", output, re.M), output
    assert "OWN-PING rc=0" in output, output
    assert echoes_received(e2e, b) == echoes + 3  # only the pings after the MAC came back
    assert metadata_packets(e2e) == metadata

    # --- (4) C runs a DHCP server: its offers never leave it, B still gets vdc's address --
    rogue = """
printf 'start 10.111.0.200\\nend 10.111.0.210\\ninterface eth0\\nlease_file /tmp/l\\n' > /tmp/d.conf
printf 'opt router 10.111.0.66\\nopt subnet 255.255.255.0\\n' >> /tmp/d.conf
touch /tmp/l && udhcpd /tmp/d.conf && echo ROGUE-UP
"""
    rc, output = e2e.run_in_guest(c["id"], c["ip_address"], rogue)
    assert rc == 0 and "ROGUE-UP" in output, output
    dropped = _dropped_dhcp(e2e, c["id"])
    renew = "udhcpc -i eth0 -n -q -t 5 -T 2 -s /etc/udhcpc/default.script >/dev/null 2>&1; "
    renew += "cat /run/net.env"
    rc, output = e2e.run_in_guest(b["id"], b["ip_address"], renew, timeout=90)
    assert rc == 0, output
    assert f"net_ip='{b['ip_address']}'" in output and f"net_gateway='{GATEWAY}'" in output
    # C's filter drops DHCP-server conversations both ways: B's request never reached it.
    assert _dropped_dhcp(e2e, c["id"]) > dropped

    for instance in (a, b, c):
        e2e.terminate(instance["id"])
    for instance in (a, b, c):
        e2e.wait_state(instance["id"], "terminated")
    filters = e2e.virsh("nwfilter-list")
    for instance in (a, b, c):
        assert instance["interfaces"][0]["id"] not in filters  # removed with the instance
    # And the set of the peers' addresses with its last member on the host.
    assert f"vdc-{peers['id']}" not in e2e.in_namespace("ipset", "list", "-n").split()
    assert e2e.api.delete(f"/api/v1/security_groups/{server['id']}").status_code == 204


def _dropped_dhcp(e2e: E2E, instance_id: str) -> int:
    """DHCP-server packets (port 67) the guest's filter dropped, to it or from it."""
    device = next(
        line.split()[0]
        for line in e2e.virsh("domiflist", instance_id).splitlines()
        if line.strip().startswith("vnet")
    )
    dropped = 0
    for chain in (f"FI-{device}", f"FO-{device}", f"HI-{device}"):
        listing = e2e.in_namespace("iptables", "-L", chain, "-v", "-x", "-n")
        for line in listing.splitlines():
            if "DROP" in line and ("spt:67" in line or "dpt:67" in line):
                dropped += int(line.split()[0])
    return dropped

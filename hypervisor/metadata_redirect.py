"""Guests ask 169.254.169.254:80; on the host, that is sent to vdc's metadata listener at the
network's gateway address, keeping the guest's source address (docs/architecture.md,
"The metadata path").

libvirt has no call for a DNAT rule, so this is plain iptables, run (argument lists only)
on the host vdc itself runs on, in the network namespace of the bridges. Remote hosts get
the same rules from their metadata proxy.
"""

from __future__ import annotations

import shutil
import subprocess

METADATA_ADDRESS = "169.254.169.254"


def _rules(bridge: str, gateway: str, port: int) -> list[tuple[str, list[str]]]:
    to_metadata = ["-i", bridge, "-d", f"{METADATA_ADDRESS}/32", "-p", "tcp", "--dport", "80"]
    to_listener = ["-i", bridge, "-d", f"{gateway}/32", "-p", "tcp", "--dport", str(port)]
    return [
        (
            "nat",
            ["PREROUTING", *to_metadata, "-j", "DNAT", "--to-destination", f"{gateway}:{port}"],
        ),
        ("filter", ["INPUT", *to_listener, "-j", "ACCEPT"]),
    ]


def _iptables(table: str, action: str, rule: list[str]) -> bool:
    tool = shutil.which("iptables")
    if tool is None:
        raise RuntimeError("iptables is not installed; guests cannot reach the metadata service")
    result = subprocess.run(  # noqa: S603 - argument list
        [tool, "-w", "-t", table, action, *rule],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if action != "-C" and result.returncode != 0:
        raise RuntimeError(f"iptables {action} {' '.join(rule)}: {result.stderr.strip()}")
    return result.returncode == 0


def ensure(bridge: str, gateway: str, port: int) -> None:
    """Adds the rules unless present (idempotent)."""
    for table, rule in _rules(bridge, gateway, port):
        if not _iptables(table, "-C", rule):
            _iptables(table, "-I", rule)


def remove(bridge: str, gateway: str, port: int) -> None:
    for table, rule in _rules(bridge, gateway, port):
        while _iptables(table, "-C", rule):
            _iptables(table, "-D", rule)

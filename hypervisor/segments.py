"""A vdc network's layer-2 segment on a host: a Linux bridge with a VXLAN port whose flood
entries name every other host on the segment. libvirt has no call for a VXLAN port, so
these are `ip` and `bridge` commands, run through a HostShell (locally, or over ssh).

Every step is idempotent: it reads what the host has (iproute2's JSON), then changes only
what differs, so a job can run it again after a crash, and two jobs may race on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from hypervisor.errors import HypervisorError
from hypervisor.host_shell import HostShell
from hypervisor.specs import SegmentSpec

VXLAN_PORT = 4789  # IANA's; every host's firewall must let UDP 4789 through on the underlay
FLOOD_MAC = "00:00:00:00:00:00"  # the fdb entry for broadcast and unknown destinations


@dataclass(frozen=True)
class SegmentState:
    """What a host has of vdc's segments (for the doctor)."""

    bridges: tuple[str, ...]  # Linux bridges named vdc*
    vxlans: dict[str, tuple[str, ...]]  # VXLAN port (vx*) -> its flood entries' addresses


class SegmentSteps:
    def __init__(self, shell: HostShell) -> None:
        self.shell = shell

    def ensure(self, spec: SegmentSpec) -> None:
        """Makes the host's segment as `spec` says. Another job (or another vdc replica)
        may be doing the same at the same moment: if a step finds its link made by the
        other meanwhile, it looks again and goes on from there."""
        try:
            self._ensure(spec)
        except HypervisorError:
            self._ensure(spec)

    def _ensure(self, spec: SegmentSpec) -> None:
        links = self._links()
        commands: list[str] = []
        if spec.own_bridge and spec.bridge not in links:
            commands.append(
                f"link add {spec.bridge} type bridge stp_state 0 forward_delay 0"
            )  # no STP delay: a new guest's port forwards at once, before its DHCP gives up
        if spec.vxlan not in links:
            commands.append(
                f"link add {spec.vxlan} type vxlan id {spec.vni} local {spec.local_ip}"
                f" dstport {VXLAN_PORT}"
            )
        if spec.own_bridge:
            commands.append(f"link set {spec.bridge} mtu {spec.mtu} up")
        commands.append(f"link set {spec.vxlan} mtu {spec.mtu} master {spec.bridge} up")
        self.shell.run(["ip", "-batch", "-"], stdin="\n".join(commands) + "\n")
        have = set(self._flood_entries(spec.vxlan))
        want = set(spec.peers)
        changes = [
            f"fdb append {FLOOD_MAC} dev {spec.vxlan} dst {peer}" for peer in sorted(want - have)
        ] + [f"fdb del {FLOOD_MAC} dev {spec.vxlan} dst {peer}" for peer in sorted(have - want)]
        if changes:
            self.shell.run(["bridge", "-batch", "-"], stdin="\n".join(changes) + "\n")

    def remove(self, spec: SegmentSpec) -> None:
        """The host's last guest left the network: its VXLAN port goes, and the bridge if
        it is vdc's own (libvirt's network keeps its bridge)."""
        links = self._links()
        doomed = [spec.vxlan] + ([spec.bridge] if spec.own_bridge else [])
        commands = [f"link del {name}" for name in doomed if name in links]
        if commands:
            self.shell.run(["ip", "-batch", "-"], stdin="\n".join(commands) + "\n")

    def state(self) -> SegmentState:
        links = self._links()
        return SegmentState(
            bridges=tuple(
                sorted(n for n, kind in links.items() if kind == "bridge" and n.startswith("vdc"))
            ),
            vxlans={
                name: tuple(sorted(self._flood_entries(name)))
                for name, kind in sorted(links.items())
                if kind == "vxlan" and name.startswith("vx")
            },
        )

    def _links(self) -> dict[str, str]:
        """Interface name -> its kind ("bridge", "vxlan", or "" for others)."""
        shown = json.loads(self.shell.run(["ip", "-j", "-d", "link", "show"]).stdout or "[]")
        return {link["ifname"]: link.get("linkinfo", {}).get("info_kind", "") for link in shown}

    def _flood_entries(self, vxlan: str) -> list[str]:
        shown = self.shell.run(["bridge", "-j", "fdb", "show", "dev", vxlan]).stdout
        return [
            entry["dst"]
            for entry in json.loads(shown or "[]")
            if entry.get("mac") == FLOOD_MAC and entry.get("dst")
        ]

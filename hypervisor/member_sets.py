"""A security group's member addresses on a host, as a kernel ipset that the filters of the
groups naming it as their source match against (nwfilter's `ipset` attribute, on an `all`
rule: libvirt 9.0 drops it from tcp, udp and icmp rules, see app/services/network/nwfilters).

Why a set, not one filter rule per member: libvirt re-instantiates every interface whose
filter changed, over a hundred ebtables/iptables commands each (1-2 s on a test host). With
the members written into the filters, each launch into a group rebuilt the filter of every
member, so the N-th launch cost N re-instantiations. A member coming or going now changes
the set alone, in one `ipset restore`; the filters stay as they are.

libvirt has no call for ipsets: these are `ipset` commands, run through a HostShell
(locally, or over ssh), in the network namespace the host's firewall lives in.
"""

from __future__ import annotations

from collections.abc import Iterable

from hypervisor.errors import HostUnreachable, HypervisorError
from hypervisor.host_shell import HostShell

PREFIX = "vdc-"  # every set vdc keeps on a host starts with this
_STAGING = "-new"  # the set being filled before it takes the live one's place
MAX_NAME = 31  # the kernel's limit on an ipset's name


def set_name(group_id: str) -> str:
    """The host's set of the group's member addresses (the filters name it)."""
    name = PREFIX + group_id
    if len(name) + len(_STAGING) > MAX_NAME:
        raise ValueError(f"security group id too long for an ipset name: {group_id!r}")
    return name


class MemberSets:
    def __init__(self, shell: HostShell) -> None:
        self.shell = shell

    def ensure(self, sets: dict[str, Iterable[str]]) -> None:
        """Makes each named set hold exactly the given IPv4 addresses, in one `ipset
        restore`. Each set is filled under a staging name and swapped in, so a filter
        matching it never sees it half full (an empty set would refuse every member)."""
        if not sets:
            return
        lines: list[str] = []
        for name, addresses in sorted(sets.items()):
            staging = name + _STAGING
            lines += [
                f"create {name} hash:ip family inet -exist",
                f"create {staging} hash:ip family inet -exist",
                f"flush {staging}",
                *(f"add {staging} {address}" for address in sorted(set(addresses))),
                f"swap {staging} {name}",
                f"destroy {staging}",
            ]
        self.shell.run(["ipset", "restore"], stdin="\n".join(lines) + "\n")

    def names(self) -> list[str]:
        """The sets vdc keeps on the host."""
        listed = self.shell.run(["ipset", "list", "-n"]).stdout.split()
        return sorted(n for n in listed if n.startswith(PREFIX) and not n.endswith(_STAGING))

    def remove(self, names: Iterable[str]) -> list[str]:
        """Destroys the sets no filter uses any more; returns those the kernel kept because
        a firewall rule still matches them (a filter not yet rebuilt): a later pass takes
        them."""
        kept = []
        for name in sorted(names):
            try:
                self.shell.run(["ipset", "destroy", name])
            except HostUnreachable:
                raise
            except HypervisorError:
                kept.append(name)
        return kept

"""Security group rules: one checked form, and Wakame-vdc's text form, both ways.

    tcp:22,22,ip4:0.0.0.0/0        TCP port 22 from anywhere
    udp:53,53,ip4:10.0.0.0/8       UDP port 53 from 10.0.0.0/8
    icmp:-1,-1,ip4:0.0.0.0/0       every ICMP type and code from anywhere
    icmp:8,0,sg-4kx9a0qz           echo requests from members of group sg-4kx9a0qz
    any:-1,-1,sg-4kx9a0qz          everything from that group's members

One rule per line; blank lines and `#` comments are skipped. For tcp and udp the two
numbers are the first and last port (1-65535); for icmp they are the type and code (-1
means any); `any` takes -1,-1 (or nothing: `any:,,...`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

PROTOCOLS = ("tcp", "udp", "icmp", "any")
GROUP_ID = re.compile(r"^sg-[a-z0-9]{8}$")


class RuleError(ValueError):
    """A rule that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Rule:
    """Inbound traffic an instance accepts: protocol, ports (or ICMP type/code), source."""

    protocol: str
    from_port: int = -1
    to_port: int = -1
    cidr: str | None = None  # e.g. "10.0.0.0/8"; exactly one of cidr, source_group_id
    source_group_id: str | None = None

    def __post_init__(self) -> None:
        check(self)


def check(rule: Rule) -> None:
    if rule.protocol not in PROTOCOLS:
        raise RuleError(f"protocol must be one of {', '.join(PROTOCOLS)}, not {rule.protocol!r}")
    if rule.protocol in ("tcp", "udp"):
        for port in (rule.from_port, rule.to_port):
            if not 1 <= port <= 65535:
                raise RuleError(f"{rule.protocol} port {port} is out of range 1-65535")
        if rule.from_port > rule.to_port:
            raise RuleError(f"port range {rule.from_port}-{rule.to_port} runs backwards")
    elif rule.protocol == "icmp":
        for name, value in (("type", rule.from_port), ("code", rule.to_port)):
            if not -1 <= value <= 255:
                raise RuleError(f"icmp {name} {value} is out of range -1-255")
        if rule.from_port == -1 and rule.to_port != -1:
            raise RuleError("an icmp code needs an icmp type")
    elif (rule.from_port, rule.to_port) != (-1, -1):
        raise RuleError("protocol any takes no ports (-1,-1)")
    if (rule.cidr is None) == (rule.source_group_id is None):
        raise RuleError("give exactly one source: a CIDR or a security group")
    if rule.cidr is not None and canonical_cidr(rule.cidr) != rule.cidr:
        raise RuleError(f"CIDR {rule.cidr!r} is not canonical ({canonical_cidr(rule.cidr)})")
    if rule.source_group_id is not None and not GROUP_ID.match(rule.source_group_id):
        raise RuleError(f"{rule.source_group_id!r} is not a security group id (sg-...)")


def canonical_cidr(text: str) -> str:
    """'10.0.0.5' -> '10.0.0.5/32'; '10.0.0.0/8' stays; host bits set is an error."""
    try:
        network = ipaddress.IPv4Network(text.strip(), strict=True)
    except ValueError as exc:
        raise RuleError(f"{text!r} is not an IPv4 address or network: {exc}") from None
    return str(network)


def parse_line(line: str) -> Rule:
    protocol, colon, rest = line.strip().partition(":")
    parts = rest.split(",")
    if not colon or len(parts) != 3:
        raise RuleError("expected PROTOCOL:FROM,TO,SOURCE (e.g. tcp:22,22,ip4:0.0.0.0/0)")
    protocol = protocol.strip().lower()
    first, last, source = (part.strip() for part in parts)
    if protocol == "any" and first == last == "":
        first = last = "-1"
    try:
        from_port, to_port = int(first), int(last)
    except ValueError:
        raise RuleError(f"ports must be whole numbers, not {first!r} and {last!r}") from None
    if source.startswith("ip4:"):
        return Rule(protocol, from_port, to_port, cidr=canonical_cidr(source[4:]))
    if source.startswith("sg-"):
        return Rule(protocol, from_port, to_port, source_group_id=source)
    raise RuleError(f"source must be ip4:CIDR or a group id sg-..., not {source!r}")


def parse(text: str) -> list[Rule]:
    """Every rule of a text; the first bad line raises RuleError naming its number."""
    rules = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            rules.append(parse_line(line))
        except RuleError as exc:
            raise RuleError(f"line {number} ({line!r}): {exc}") from None
    return rules


def render_line(rule: Rule) -> str:
    source = f"ip4:{rule.cidr}" if rule.cidr is not None else str(rule.source_group_id)
    return f"{rule.protocol}:{rule.from_port},{rule.to_port},{source}"


def render(rules: list[Rule]) -> str:
    return "".join(render_line(rule) + "\n" for rule in rules)

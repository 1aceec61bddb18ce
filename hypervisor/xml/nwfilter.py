"""libvirt <filter> XML (network filters) as plain objects, no policy."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from hypervisor.xml.base import optional_text, parse, parse_int, required_attr, serialize, sub

# The match attributes vdc uses, in the order they are written.
_MATCH_ATTRIBUTES = (
    "srcipaddr",
    "srcipmask",
    "ipset",
    "ipsetflags",
    "srcportstart",
    "srcportend",
    "dstportstart",
    "dstportend",
    "type",
    "code",
)
_TEXT_ATTRIBUTES = ("srcipaddr", "ipset", "ipsetflags")


@dataclass(frozen=True)
class FilterRule:
    """<rule action direction priority><PROTOCOL attributes.../></rule>."""

    action: str  # accept, drop, return, ...
    direction: str  # in (to the guest), out (from the guest), inout
    protocol: str  # the match element: tcp, udp, icmp, all, ...
    priority: int | None = None
    srcipaddr: str | None = None
    srcipmask: int | None = None
    srcportstart: int | None = None
    srcportend: int | None = None
    dstportstart: int | None = None
    dstportend: int | None = None
    type: int | None = None  # icmp
    code: int | None = None  # icmp
    ipset: str | None = None  # a kernel ipset kept outside libvirt (hypervisor/member_sets.py)
    ipsetflags: str | None = None  # which address it matches: "src", "dst", "src,dst"

    def to_element(self) -> ET.Element:
        rule = ET.Element("rule", action=self.action, direction=self.direction)
        if self.priority is not None:
            rule.set("priority", str(self.priority))
        sub(rule, self.protocol, **{name: getattr(self, name) for name in _MATCH_ATTRIBUTES})
        return rule

    @classmethod
    def from_element(cls, node: ET.Element) -> FilterRule:
        match = node[0] if len(node) else ET.Element("all")
        values: dict[str, object] = {}
        for name in _MATCH_ATTRIBUTES:
            value = match.get(name)
            if value is not None:
                text = name in _TEXT_ATTRIBUTES
                values[name] = value if text else parse_int(value, f"<{match.tag} {name}>")
        priority = node.get("priority")
        return cls(
            action=required_attr(node, "action"),
            direction=required_attr(node, "direction"),
            protocol=match.tag,
            priority=None if priority is None else parse_int(priority, "<rule priority>"),
            **values,  # type: ignore[arg-type]  # each typed as its attribute is above
        )


@dataclass(frozen=True)
class NwFilter:
    name: str
    uuid: str | None = None
    chain: str | None = None  # root, ipv4, arp, ...
    filterrefs: tuple[str, ...] = ()  # other filters included first (e.g. clean-traffic)
    rules: tuple[FilterRule, ...] = ()

    def to_xml(self) -> str:
        root = ET.Element("filter", name=self.name)
        if self.chain is not None:
            root.set("chain", self.chain)
        if self.uuid is not None:
            sub(root, "uuid", self.uuid)
        for name in self.filterrefs:
            sub(root, "filterref", filter=name)
        for rule in self.rules:
            root.append(rule.to_element())
        return serialize(root)

    @classmethod
    def from_xml(cls, text: str) -> NwFilter:
        root = parse(text, "filter")
        return cls(
            name=required_attr(root, "name"),
            uuid=optional_text(root, "uuid"),
            chain=root.get("chain"),
            filterrefs=tuple(required_attr(ref, "filter") for ref in root.findall("filterref")),
            rules=tuple(FilterRule.from_element(rule) for rule in root.findall("rule")),
        )

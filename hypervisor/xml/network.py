"""libvirt <network> XML (a bridge plus libvirt's dnsmasq) as plain objects, no policy.

Only one IPv4 <ip> is modelled; parsing skips IPv6 addresses and everything else vdc does
not write (libvirt's generated <mac>, NAT port ranges, ...).
"""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from hypervisor.xml.base import (
    XmlError,
    element,
    on_off,
    optional_attr,
    optional_text,
    parse,
    parse_int,
    parse_on_off,
    required_attr,
    required_text,
    serialize,
    sub,
)


@dataclass(frozen=True)
class NetworkDhcpHost:
    """A static DHCP entry. Its to_xml() is the snippet virNetworkUpdate takes for
    VIR_NETWORK_SECTION_IP_DHCP_HOST."""

    mac: str | None  # libvirt also allows name-only hosts; vdc always sets the MAC
    ip: str
    name: str | None = None

    def to_element(self) -> ET.Element:
        return element("host", mac=self.mac, ip=self.ip, name=self.name)

    def to_xml(self) -> str:
        return serialize(self.to_element())

    @classmethod
    def from_element(cls, node: ET.Element) -> NetworkDhcpHost:
        return cls(node.get("mac"), required_attr(node, "ip"), node.get("name"))

    @classmethod
    def from_xml(cls, text: str) -> NetworkDhcpHost:
        return cls.from_element(parse(text, "host"))


@dataclass(frozen=True)
class NetworkIp:
    """The network's IPv4 address on the bridge, with the DHCP server dnsmasq runs there."""

    address: str
    prefix: int
    dhcp_start: str | None = None
    dhcp_end: str | None = None
    dhcp_hosts: tuple[NetworkDhcpHost, ...] = ()

    def to_element(self) -> ET.Element:
        ip = element("ip", address=self.address, prefix=self.prefix)
        if self.dhcp_start is not None or self.dhcp_hosts:
            dhcp = sub(ip, "dhcp")
            if self.dhcp_start is not None:
                sub(dhcp, "range", start=self.dhcp_start, end=self.dhcp_end)
            for host in self.dhcp_hosts:
                dhcp.append(host.to_element())
        return ip

    @classmethod
    def from_element(cls, node: ET.Element) -> NetworkIp:
        return cls(
            address=required_attr(node, "address"),
            prefix=_prefix(node),
            dhcp_start=optional_attr(node, "dhcp/range", "start"),
            dhcp_end=optional_attr(node, "dhcp/range", "end"),
            dhcp_hosts=tuple(
                NetworkDhcpHost.from_element(host) for host in node.findall("dhcp/host")
            ),
        )


def _prefix(ip: ET.Element) -> int:
    """libvirt accepts either prefix='24' or netmask='255.255.255.0'."""
    prefix = ip.get("prefix")
    if prefix is not None:
        return parse_int(prefix, "<ip prefix>")
    netmask = ip.get("netmask")
    if netmask is None:
        raise XmlError("<ip> has neither a prefix nor a netmask")
    try:
        return ipaddress.IPv4Network(f"0.0.0.0/{netmask}").prefixlen
    except ValueError as err:
        raise XmlError(f"<ip netmask>: {netmask!r} is not a netmask") from err


@dataclass(frozen=True)
class Network:
    name: str
    uuid: str | None = None
    forward_mode: str | None = None  # nat, route, ...; None: isolated (no <forward>)
    bridge: str | None = None
    bridge_stp: bool | None = None
    bridge_delay: int | None = None  # seconds of STP forward delay
    domain_name: str | None = None
    dns_forwarders: tuple[str, ...] = ()  # addresses dnsmasq forwards queries to
    ip: NetworkIp | None = None
    mtu: int | None = None  # the bridge's; dnsmasq hands it to guests as DHCP option 26

    @property
    def dhcp_hosts(self) -> tuple[NetworkDhcpHost, ...]:
        return () if self.ip is None else self.ip.dhcp_hosts

    def to_xml(self) -> str:
        root = ET.Element("network")
        sub(root, "name", self.name)
        if self.uuid is not None:
            sub(root, "uuid", self.uuid)
        if self.forward_mode is not None:
            sub(root, "forward", mode=self.forward_mode)
        if self.bridge is not None:
            sub(
                root,
                "bridge",
                name=self.bridge,
                stp=on_off(self.bridge_stp),
                delay=self.bridge_delay,
            )
        if self.mtu is not None:
            sub(root, "mtu", size=self.mtu)
        if self.domain_name is not None:
            sub(root, "domain", name=self.domain_name)
        if self.dns_forwarders:
            dns = sub(root, "dns")
            for address in self.dns_forwarders:
                sub(dns, "forwarder", addr=address)
        if self.ip is not None:
            root.append(self.ip.to_element())
        return serialize(root)

    @classmethod
    def from_xml(cls, text: str) -> Network:
        root = parse(text, "network")
        forward = root.find("forward")
        delay = optional_attr(root, "bridge", "delay")
        mtu = optional_attr(root, "mtu", "size")
        ipv4 = [ip for ip in root.findall("ip") if ip.get("family", "ipv4") == "ipv4"]
        return cls(
            name=required_text(root, "name"),
            uuid=optional_text(root, "uuid"),
            # A <forward/> without a mode means NAT (libvirt's default).
            forward_mode=None if forward is None else forward.get("mode", "nat"),
            bridge=optional_attr(root, "bridge", "name"),
            bridge_stp=parse_on_off(optional_attr(root, "bridge", "stp")),
            bridge_delay=None if delay is None else parse_int(delay, "<bridge delay>"),
            domain_name=optional_attr(root, "domain", "name"),
            # Forwarders with only a domain (<forwarder domain=... />) have no address.
            dns_forwarders=tuple(
                address
                for forwarder in root.findall("dns/forwarder")
                if (address := forwarder.get("addr")) is not None
            ),
            ip=NetworkIp.from_element(ipv4[0]) if ipv4 else None,
            mtu=None if mtu is None else parse_int(mtu, "<mtu size>"),
        )

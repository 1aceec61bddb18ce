"""A domain's screen: <graphics type='vnc'> and its <video> card, as plain objects, no policy.

The password (libvirt's `passwd`) is only in the XML libvirt returns when asked with
VIR_DOMAIN_XML_SECURE; read without it, a graphics element has no password, and writing
that back would drop the password from the definition (see hypervisor/guest.py).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from hypervisor.xml.base import element, optional_attr, parse_int, sub


@dataclass(frozen=True)
class DomainGraphics:
    type: str = "vnc"
    listen: str | None = None  # the address qemu listens on (<listen type='address'>)
    autoport: bool = True  # libvirt picks a free port at each start (5900 and up)
    port: int | None = None  # the live port; -1 or None when not (yet) given one
    password: str | None = None  # only present in XML read with VIR_DOMAIN_XML_SECURE
    share_policy: str | None = None  # "force-shared": no client can push the others out

    def to_element(self) -> ET.Element:
        graphics = element(
            "graphics",
            type=self.type,
            port=self.port,
            autoport="yes" if self.autoport else "no",
            sharePolicy=self.share_policy,
            passwd=self.password,
        )
        if self.listen is not None:
            sub(graphics, "listen", type="address", address=self.listen)
        return graphics

    @classmethod
    def from_element(cls, node: ET.Element) -> DomainGraphics:
        port = node.get("port")
        return cls(
            type=node.get("type", ""),
            # libvirt writes the address on <graphics listen=> too; <listen> is the newer form.
            listen=optional_attr(node, "listen[@type='address']", "address") or node.get("listen"),
            autoport=node.get("autoport") == "yes",
            port=None if port is None else parse_int(port, "<graphics port>"),
            password=node.get("passwd"),
            share_policy=node.get("sharePolicy"),
        )


@dataclass(frozen=True)
class DomainVideo:
    model: str  # "vga": the standard VGA card, whose text mode every kernel can drive

    def to_element(self) -> ET.Element:
        video = element("video")
        sub(video, "model", type=self.model)
        return video

    @classmethod
    def from_element(cls, node: ET.Element) -> DomainVideo:
        return cls(model=optional_attr(node, "model", "type") or "")

"""ElementTree helpers shared by the libvirt XML classes: build, serialise, parse.

Values only ever reach XML through ElementTree, which escapes them; nothing here formats
XML with string operations.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

# Units libvirt accepts for sizes (domain memory, volume capacity), as bytes per unit.
_BYTES_PER_UNIT = {
    "b": 1,
    "bytes": 1,
    "kb": 1000,
    "k": 1024,
    "kib": 1024,
    "mb": 1000**2,
    "m": 1024**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "g": 1024**3,
    "gib": 1024**3,
    "tb": 1000**4,
    "t": 1024**4,
    "tib": 1024**4,
}


class XmlError(ValueError):
    """The XML is malformed or lacks something the class cannot do without."""


def element(tag: str, text: str | int | None = None, **attrs: object) -> ET.Element:
    """A new element; attributes whose value is None are left out.

    Attributes keep the keyword order, so the output is deterministic.
    """
    new = ET.Element(tag, {name: str(value) for name, value in attrs.items() if value is not None})
    if text is not None:
        new.text = str(text)
    return new


def sub(parent: ET.Element, tag: str, text: str | int | None = None, **attrs: object) -> ET.Element:
    """Append a new child element to parent (see element()) and return the child."""
    child = element(tag, text, **attrs)
    parent.append(child)
    return child


def serialize(root: ET.Element) -> str:
    """Pretty-print with two-space indentation and a final newline."""
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode") + "\n"


def parse(text: str, expected_tag: str) -> ET.Element:
    try:
        # The XML comes from vdc itself or from libvirt, both trusted; expat (>= 2.4) also
        # refuses entity-expansion bombs on its own.
        root = ET.fromstring(text)  # noqa: S314
    except ET.ParseError as err:
        raise XmlError(f"not well-formed XML: {err}") from err
    if root.tag != expected_tag:
        raise XmlError(f"expected <{expected_tag}>, got <{root.tag}>")
    return root


def required_attr(element: ET.Element, name: str) -> str:
    value = element.get(name)
    if value is None:
        raise XmlError(f"<{element.tag}> lacks the attribute {name!r}")
    return value


def required_child(element: ET.Element, path: str) -> ET.Element:
    child = element.find(path)
    if child is None:
        raise XmlError(f"<{element.tag}> lacks <{path}>")
    return child


def required_text(element: ET.Element, path: str) -> str:
    return required_child(element, path).text or ""


def optional_text(element: ET.Element, path: str) -> str | None:
    child = element.find(path)
    return None if child is None else child.text or ""


def optional_attr(element: ET.Element, path: str, name: str) -> str | None:
    child = element.find(path)
    return None if child is None else child.get(name)


def parse_int(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError as err:
        raise XmlError(f"{what}: {value!r} is not an integer") from err


def parse_on_off(value: str | None) -> bool | None:
    return None if value is None else value == "on"


def on_off(value: bool | None) -> str | None:
    return None if value is None else ("on" if value else "off")


def size_in_bytes(element: ET.Element, default_unit: str) -> int:
    """The size in an element like <memory unit='MiB'>512</memory>, in bytes."""
    unit = (element.get("unit") or default_unit).lower()
    if unit not in _BYTES_PER_UNIT:
        raise XmlError(f"<{element.tag}>: unknown unit {unit!r}")
    return parse_int(element.text or "", f"<{element.tag}>") * _BYTES_PER_UNIT[unit]

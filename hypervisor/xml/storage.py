"""libvirt storage <pool> (dir type) and <volume> XML as plain objects, no policy."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from hypervisor.xml.base import (
    optional_attr,
    optional_text,
    parse,
    required_attr,
    required_child,
    required_text,
    serialize,
    size_in_bytes,
    sub,
)


@dataclass(frozen=True)
class StoragePool:
    name: str
    target_path: str  # the directory holding the pool's volumes
    uuid: str | None = None
    type: str = "dir"

    def to_xml(self) -> str:
        root = ET.Element("pool", type=self.type)
        sub(root, "name", self.name)
        if self.uuid is not None:
            sub(root, "uuid", self.uuid)
        sub(sub(root, "target"), "path", self.target_path)
        return serialize(root)

    @classmethod
    def from_xml(cls, text: str) -> StoragePool:
        root = parse(text, "pool")
        return cls(
            name=required_text(root, "name"),
            target_path=required_text(root, "target/path"),
            uuid=optional_text(root, "uuid"),
            type=required_attr(root, "type"),
        )


@dataclass(frozen=True)
class StorageVolume:
    name: str
    capacity_bytes: int  # the virtual size the guest sees
    format: str | None = None  # qcow2, raw
    backing_path: str | None = None
    backing_format: str | None = None
    # Where the volume lives; libvirt fills it in from the pool, vdc reads it back.
    target_path: str | None = None

    def to_xml(self) -> str:
        root = ET.Element("volume")
        sub(root, "name", self.name)
        sub(root, "capacity", self.capacity_bytes, unit="bytes")
        if self.format is not None or self.target_path is not None:
            target = sub(root, "target")
            if self.target_path is not None:
                sub(target, "path", self.target_path)
            if self.format is not None:
                sub(target, "format", type=self.format)
        if self.backing_path is not None:
            backing = sub(root, "backingStore")
            sub(backing, "path", self.backing_path)
            if self.backing_format is not None:
                sub(backing, "format", type=self.backing_format)
        return serialize(root)

    @classmethod
    def from_xml(cls, text: str) -> StorageVolume:
        root = parse(text, "volume")
        return cls(
            name=required_text(root, "name"),
            capacity_bytes=size_in_bytes(required_child(root, "capacity"), "bytes"),
            format=optional_attr(root, "target/format", "type"),
            backing_path=optional_text(root, "backingStore/path"),
            backing_format=optional_attr(root, "backingStore/format", "type"),
            target_path=optional_text(root, "target/path"),
        )

"""Typed libvirt XML documents: each class converts object <-> XML and holds no policy.

The choices (buses, models, machine type) are made in hypervisor/designer.py.
"""

from hypervisor.xml.base import XmlError
from hypervisor.xml.domain import (
    Domain,
    DomainConsole,
    DomainDisk,
    DomainInterface,
    DomainOs,
    DomainRng,
    DomainSerial,
    VdcInstanceMetadata,
)
from hypervisor.xml.graphics import DomainGraphics, DomainVideo
from hypervisor.xml.network import Network, NetworkDhcpHost, NetworkIp
from hypervisor.xml.nwfilter import FilterRule, NwFilter
from hypervisor.xml.storage import StoragePool, StorageVolume

__all__ = [
    "Domain",
    "DomainConsole",
    "DomainDisk",
    "DomainGraphics",
    "DomainInterface",
    "DomainOs",
    "DomainRng",
    "DomainSerial",
    "DomainVideo",
    "FilterRule",
    "Network",
    "NetworkDhcpHost",
    "NetworkIp",
    "NwFilter",
    "StoragePool",
    "StorageVolume",
    "VdcInstanceMetadata",
    "XmlError",
]

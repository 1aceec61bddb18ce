"""A libvirt host by URI, and what every group of host steps shares: the connection, the
host's own facts, and lookups where a missing thing is simply absent."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

import libvirt

from hypervisor.connection import POOL, ConnectionPool
from hypervisor.errors import absent_if_missing, translated
from hypervisor.specs import HostCapacity
from hypervisor.xml.base import parse


class Host:
    def __init__(self, uri: str, pool: ConnectionPool = POOL) -> None:
        self.uri = uri
        self._pool = pool

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.uri}>"

    def _conn(self) -> libvirt.virConnect:
        return self._pool.get(self.uri)

    # --- what this process made sure of on the host (ConnectionPool.facts) -------------

    def _known(self, fact: object) -> bool:
        return fact in self._pool.facts(self.uri)

    def _learn(self, fact: object) -> None:
        self._pool.facts(self.uri).add(fact)

    def forget_facts(self) -> bool:
        """After a failed step: every host is checked again from the next step on (something
        made sure of may be gone: a network destroyed, a pool removed, here or on the host
        that serves a network). False when nothing was remembered."""
        return self._pool.forget_facts()

    @translated
    def capacity(self) -> HostCapacity:
        connection = self._conn()
        model, memory_mib, cpus, *_ = connection.getInfo()
        return HostCapacity(
            cpu_cores=int(cpus),
            memory_mib=int(memory_mib),
            arch=str(model),
            hypervisor=connection.getType(),
        )

    @translated
    def virt_type(self, requested: str) -> str:
        """The domain type to use: the test driver's own, or kvm/qemu as asked; `auto` picks
        kvm only where libvirt reports it can run KVM guests."""
        connection = self._conn()
        if connection.getType().lower() == "test":
            return "test"
        if requested != "auto":
            return requested
        capabilities = parse(connection.getCapabilities(), "capabilities")
        kvm = capabilities.findall("./guest/arch/domain[@type='kvm']")
        return "kvm" if kvm else "qemu"

    def is_test(self) -> bool:
        """libvirt's test driver: an in-memory fake host (vdc's own test suites)."""
        return urlsplit(self.uri).scheme == "test"

    def is_local(self) -> bool:
        """True for the host vdc runs on (a URI without a host part), not the test driver."""
        return not urlsplit(self.uri).netloc and self._conn().getType().lower() != "test"

    # --- lookups: None when the thing is not there ------------------------------------

    def _network(self, name: str) -> libvirt.virNetwork | None:
        return absent_if_missing(
            lambda: self._conn().networkLookupByName(name), libvirt.VIR_ERR_NO_NETWORK
        )

    def _storage_pool(self, name: str) -> libvirt.virStoragePool | None:
        return absent_if_missing(
            lambda: self._conn().storagePoolLookupByName(name), libvirt.VIR_ERR_NO_STORAGE_POOL
        )

    def _volume(self, pool_name: str, name: str) -> libvirt.virStorageVol | None:
        pool = self._storage_pool(pool_name)
        if pool is None:
            return None
        return absent_if_missing(
            lambda: pool.storageVolLookupByName(name), libvirt.VIR_ERR_NO_STORAGE_VOL
        )

    def _nwfilter(self, name: str) -> libvirt.virNWFilter | None:
        return absent_if_missing(
            lambda: self._conn().nwfilterLookupByName(name), libvirt.VIR_ERR_NO_NWFILTER
        )


T = TypeVar("T", libvirt.virNetwork, libvirt.virStoragePool)


def define_once(lookup: Callable[[], T], define: Callable[[], T], missing: int) -> T:
    """Looks up, or defines when missing. Two jobs may race to define the same network or
    pool (the first launches on a new host); the loser finds the winner's definition."""
    found = absent_if_missing(lookup, missing)
    if found is not None:
        return found
    try:
        return define()
    except libvirt.libvirtError as error:
        if "already exists" not in (error.get_error_message() or ""):
            raise
        return lookup()


def start_once(thing: libvirt.virNetwork | libvirt.virStoragePool) -> None:
    if thing.isActive():
        return
    try:
        thing.create()
    except libvirt.libvirtError:
        if not thing.isActive():  # another job started it meanwhile: fine
            raise

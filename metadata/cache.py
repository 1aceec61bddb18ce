"""Short-lived caches in front of the database: a guest at boot asks dozens of questions
in a row, and a boot storm is many guests doing so at once.

- leases, per address, for one second: an address passes to another instance only after
  its old instance is terminated and the new one has booted and got it by DHCP, which
  takes longer; an http_tokens change applies within that second;
- trees, per instance id and version (its `updated_at`, read with the lease), for ten
  seconds: a change to the instance (a volume attached) is a new key, so it shows within
  the lease's second.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

import sqlalchemy as sa
from sqlmodel import Session

from metadata import facts, tree
from metadata.resolver import Lease

V = TypeVar("V")
_MISSING = object()
_MAX_ENTRIES = 10_000  # a bound, not an eviction policy: entries are rebuilt on demand


class TtlCache(Generic[V]):
    def __init__(self, seconds: float, load: Callable[[str], V]) -> None:
        self._seconds = seconds
        self._load = load
        self._entries: dict[str, tuple[float, V]] = {}

    def peek(self, key: str) -> V | object:
        """The cached value, or _MISSING (callers then load it off the event loop)."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        return _MISSING

    def load(self, key: str) -> V:
        value = self._load(key)
        if len(self._entries) >= _MAX_ENTRIES:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + self._seconds, value)
        return value


def lease_cache(engine: sa.Engine) -> TtlCache[Lease | None]:
    def load(ip: str) -> Lease | None:
        with Session(engine) as session:
            return facts.lease_for(session, ip)

    return TtlCache(1.0, load)


def tree_cache(engine: sa.Engine, region: str) -> TtlCache[tree.Tree | None]:
    def load(key: str) -> tree.Tree | None:
        instance_id = key.partition("@")[0]  # Lease.tree_key: "<instance id>@<version>"
        with Session(engine) as session:
            instance_facts = facts.gather(session, instance_id, region)
        return tree.build(instance_facts) if instance_facts is not None else None

    return TtlCache(10.0, load)


MISSING = _MISSING

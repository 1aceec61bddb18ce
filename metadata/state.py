"""What the metadata service knows, in memory: every live instance's leases and its answers,
prebuilt as bytes. A request reads dicts; the database is read in the background.

- refresh() reads the instances changed since the last look (every change to an instance
  moves its `updated_at`: a state, a volume, its groups, its token option) and rebuilds
  their leases and answers; now and then it rebuilds every instance it has built, to catch
  what no `updated_at` tells (an instance deleted outright, a renamed group).
- A request from an address with no lease in memory reads the database once (the
  instance may be newer than the last refresh, or not yet built: nothing is built at
  start) and remembers a miss for a second, so an unknown address cannot make every
  request a database read.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col, select

from app.models import Instance
from app.models.instance import GONE_STATES, InstanceState
from metadata import facts, tree
from metadata.resolver import Lease

FULL_EVERY = 300.0  # seconds between rebuilds of everything
OVERLAP = timedelta(seconds=2)  # looked at again: a change committed just before the mark
MISS_SECONDS = 1.0
LOAD_CHUNK = 500  # instances built from one set of queries (the IN lists' length)
NOT_BOOTED = (InstanceState.pending, InstanceState.starting)


@dataclass
class Prebuilt:
    """One instance's answers: normalised path below the version -> Answer."""

    instance_id: str
    answers: dict[str, tree.Answer] = field(default_factory=dict)

    def answer(self, path: str) -> tree.Answer:
        return self.answers.get(normalise(path), tree.NOT_FOUND)


class MetadataState:
    def __init__(self, engine: sa.Engine, region: str) -> None:
        self.engine = engine
        self.region = region
        self.leases: dict[str, Lease] = {}  # address -> lease
        self.instances: dict[str, Prebuilt] = {}  # instance id -> its answers
        self._addresses: dict[str, tuple[str, ...]] = {}  # instance id -> its addresses
        self._versions: dict[str, str] = {}  # instance id -> the updated_at it was built from
        self._misses: dict[str, float] = {}  # address -> when the miss may be asked again
        self._mark: datetime | None = None
        self._last_full = 0.0
        self._lock = threading.Lock()  # one refresh at a time

    # --- the request path -------------------------------------------------------------

    def lease(self, address: str) -> Lease | None:
        found = self.leases.get(address)
        if found is not None:
            return found
        now = time.monotonic()
        if self._misses.get(address, 0.0) > now:
            return None
        self._load_address(address)
        found = self.leases.get(address)
        if found is None:
            if len(self._misses) > 10_000:
                self._misses.clear()
            self._misses[address] = now + MISS_SECONDS
        return found

    def prebuilt(self, instance_id: str) -> Prebuilt | None:
        return self.instances.get(instance_id)

    # --- the background ---------------------------------------------------------------

    def refresh(self) -> None:
        """Brings the state up to date: what changed since the last look, or everything."""
        with self._lock:
            started = datetime.now().astimezone()
            full = self._mark is None or time.monotonic() - self._last_full > FULL_EVERY
            with Session(self.engine) as session:
                statement = select(Instance.id, Instance.updated_at, Instance.state)
                if not full:
                    assert self._mark is not None
                    statement = statement.where(col(Instance.updated_at) > self._mark - OVERLAP)
                rows = session.exec(statement).all()
                seen = set()
                changed: list[str] = []  # built below, together (facts.gather_many)
                for instance_id, updated, state in rows:
                    seen.add(instance_id)
                    if state in GONE_STATES:
                        self._forget(instance_id)
                    elif full:
                        # Every instance looked at, only those built are built again: the
                        # others are built at their first question (lease()) or their next
                        # change. Building all of them at start (and every FULL_EVERY) took
                        # 13 to 22 s of CPU at 10,000 instances.
                        if instance_id in self.instances:
                            changed.append(instance_id)
                    elif state in NOT_BOOTED:
                        # No guest asks before its domain runs: it is built once, when
                        # `running` (or at its first question, by lease()), not at each step
                        # of its launch.
                        continue
                    elif self._versions.get(instance_id) != updated.isoformat():
                        # A change seen in an earlier look (the overlap shows it again for
                        # two seconds) is not rebuilt again: during launches that was eight
                        # rebuilds per change, on the thread that shares the GIL with the
                        # answers.
                        changed.append(instance_id)
                for start in range(0, len(changed), LOAD_CHUNK):
                    self._load_many(session, changed[start : start + LOAD_CHUNK])
            if full:
                for gone in set(self.instances) - seen:
                    self._forget(gone)
                self._last_full = time.monotonic()
            self._mark = started

    def _load_address(self, address: str) -> None:
        with Session(self.engine) as session:
            lease = facts.lease_for(session, address)
            if lease is not None:
                self._load(session, lease.instance_id)

    def _load(self, session: Session, instance_id: str) -> None:
        self._load_many(session, [instance_id])

    def _load_many(self, session: Session, instance_ids: list[str]) -> None:
        gathered = facts.gather_many(session, instance_ids, self.region)
        for instance_id in instance_ids:
            found = gathered.get(instance_id)
            if found is None:
                self._forget(instance_id)
            else:
                self._build(*found)

    def _build(self, instance: Instance, known: tree.InstanceFacts) -> None:
        instance_id = instance.id
        version = instance.updated_at.isoformat()
        prebuilt = Prebuilt(instance_id, prebuild(tree.build(known)))
        addresses = tuple(interface.ip for interface in known.interfaces)
        self.instances[instance_id] = prebuilt
        for stale in set(self._addresses.get(instance_id, ())) - set(addresses):
            if (old := self.leases.get(stale)) is not None and old.instance_id == instance_id:
                del self.leases[stale]
        for interface in known.interfaces:
            self.leases[interface.ip] = Lease(
                instance_id=instance_id,
                ip=interface.ip,
                gateway=interface.gateway,
                http_tokens=instance.http_tokens,
                version=version,
            )
            self._misses.pop(interface.ip, None)
        self._addresses[instance_id] = addresses
        self._versions[instance_id] = version

    def _forget(self, instance_id: str) -> None:
        self.instances.pop(instance_id, None)
        self._versions.pop(instance_id, None)
        for address in self._addresses.pop(instance_id, ()):
            if (lease := self.leases.get(address)) is not None and lease.instance_id == instance_id:
                del self.leases[address]


def normalise(path: str) -> str:
    """'meta-data//local-ipv4/' -> 'meta-data/local-ipv4': how `tree.render` reads paths."""
    return "/".join(part for part in path.split("/") if part)


def prebuild(whole: tree.Tree) -> dict[str, tree.Answer]:
    """Every answer the tree gives, rendered once (`tree.render` stays the one place that
    says what an answer is; this only asks it for every path there is)."""
    answers: dict[str, tree.Answer] = {}

    def walk(node: tree.Tree | str | bytes, path: list[str]) -> None:
        key = "/".join(path)
        answers[key] = tree.render(whole, key)
        if isinstance(node, dict):
            for name, child in node.items():
                walk(child, [*path, name])
                if "=" in name:  # public-keys/0/ is the entry listed as "0=name"
                    walk(child, [*path, name.split("=", 1)[0]])

    walk(whole, [])
    answers[""] = tree.version_root(whole)
    return answers

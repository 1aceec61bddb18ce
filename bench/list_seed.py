"""Seeds a vdc database for bench/list.py: accounts, a host, networks, an image and many
instances, through vdc's own services.

Everything but the bulk of the instances goes through the services (accounts with their
keys and default groups, a test:// host, one private network per account, a public
image). Instances:
- `services`: every instance is a `compute.instances.launch`, as the API does it (the
  job worker off). About 10-15 ms per launch on SQLite and 20-25 ms on PostgreSQL on the
  development machine, growing with the rows (each launch sums its host's load), so
  10,000 take minutes per database;
- `batch`: each account's first instance is a real launch; the others are copies of its
  rows (instance, interface, group membership, root-disk volume, launch job) through the
  same model classes, with fresh ids, MACs and the next addresses, added 1,000 at a time.
  Seconds for 10,000.

Then a state mix (mostly running; stopped, pending, error, terminated) is written with
UPDATEs through the model, as the job worker would have left it, and creation times are
spread over 30 days (batch) so that sorting has something to sort.
"""

from __future__ import annotations

import ipaddress
import subprocess
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Session, col, select

from app.config import Settings
from app.ids import new_id
from app.models import Account, Instance, Job, NetworkInterface, Volume
from app.models.common import utcnow
from app.models.host_node import HostNodeCreate
from app.models.instance import GONE_STATES, InstanceCreate, InstanceState
from app.models.job import JobState
from app.models.network import NetworkCreate
from app.models.security_group import InstanceSecurityGroup
from app.models.volume import VolumeState
from app.services import hosts
from app.services.compute import instances
from app.services.identity import accounts
from app.services.images import images
from app.services.network import networks
from app.services.network.addresses import random_mac
from app.services.state_changes import mark_memberships

NODE = (
    "<node><cpu><mhz>2000</mhz><model>x86_64</model><active>4096</active><nodes>1</nodes>"
    "<sockets>1</sockets><cores>4096</cores><threads>1</threads></cpu>"
    "<memory>4294967296</memory></node>"
)
USER_DATA = "#cloud-config\npackages: [nginx]\n" + "# padding\n" * 100  # ~1 KiB each
# Every 20 instances: 12 running, 3 stopped, 1 pending, 1 error, 3 terminated.
STATE_CYCLE = (
    [InstanceState.running] * 12
    + [InstanceState.stopped] * 3
    + [InstanceState.pending, InstanceState.error]
    + [InstanceState.terminated] * 3
)
BATCH = 1000


@dataclass
class Seeded:
    admin_key: str
    user_keys: dict[str, str] = field(default_factory=dict)  # account id -> key
    instances: int = 0
    seconds: float = 0.0


def settings_for(data_dir: Path, url: str, web_secret: str) -> Settings:
    return Settings(
        data_dir=data_dir,
        database_url=url,
        import_dirs=str(data_dir / "import"),
        allow_test_hosts=True,
        workers=0,
        web_secret=web_secret,
        quota_instances=-1,
        quota_cores=-1,
        quota_memory_mib=-1,
        quota_volume_gib=-1,
    )


def fast_writes(engine: sa.Engine) -> None:
    """Seeding only: commits need not reach the disk (the measured server does not use
    this engine)."""

    def relax(connection: object, _record: object) -> None:
        cursor = connection.cursor()  # type: ignore[attr-defined]
        if engine.dialect.name == "sqlite":
            cursor.execute("PRAGMA synchronous=OFF")
        else:
            cursor.execute("SET synchronous_commit = off")
        cursor.close()

    sa.event.listen(engine, "connect", relax)


def seed(engine: sa.Engine, settings: Settings, count: int, n_accounts: int, mode: str) -> Seeded:
    started = time.perf_counter()
    base = settings.data_dir
    (base / "import").mkdir(parents=True, exist_ok=True)
    node = base / "node.xml"
    node.write_text(NODE)
    disk = base / "import" / "bench.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-f", "qcow2", str(disk), "64M"], check=True, capture_output=True
    )
    with Session(engine, expire_on_commit=False) as session:
        admin, admin_key = accounts.create_account(session, "bench-admin", is_admin=True)
        session.commit()
        hosts.add_host(session, settings, HostNodeCreate(name="bench", uri=f"test://{node}"))
        image = images.register_local(
            session,
            settings,
            disk,
            images.ImageSpec(arch="x86_64", account_id=admin.id, is_public=True),
        )
        result = Seeded(admin_key=admin_key)
        owners: list[tuple[Account, str]] = []
        for n in range(n_accounts):
            account, key = accounts.create_account(session, f"tenant{n:02d}")
            session.commit()
            network = networks.create_network(
                session,
                NetworkCreate(name=f"tenant{n:02d}", cidr=f"10.{n}.0.0/16", account_id=account.id),
            )
            result.user_keys[account.id] = key
            owners.append((account, network.id))

        def launch(k: int) -> Instance:
            account, network_id = owners[k % n_accounts]
            body = InstanceCreate(
                image_id=image.id,
                instance_type="nano",
                network_id=network_id,
                display_name=f"web-{k:05d}",
                hostname=f"web-{k:05d}",
                user_data=USER_DATA,
            )
            return instances.launch(session, settings, account, body)

        if mode == "services":
            for k in range(count):
                launch(k)
        else:
            templates = [launch(k) for k in range(min(n_accounts, count))]
            _copies(session, templates, count)
        _state_mix(session)
    result.instances = count
    result.seconds = time.perf_counter() - started
    return result


def _copies(session: Session, templates: list[Instance], count: int) -> None:
    """Instances past the first of each account: copies of that account's launched rows."""
    related = {t.id: _rows_of(session, t.id) for t in templates}
    macs: set[str] = set(session.exec(select(NetworkInterface.mac_address)))
    start = utcnow() - timedelta(days=30)
    step = timedelta(days=30) / max(count, 1)
    pending: list[object] = []
    for k in range(len(templates), count):
        template = templates[k % len(templates)]
        nth = k // len(templates)  # this account's nth instance (the template is the 0th)
        instance_id = new_id("instance")
        created = start + step * k
        pending.append(
            _copy(
                template,
                id=instance_id,
                display_name=f"web-{k:05d}",
                hostname=f"web-{k:05d}",
                created_at=created,
                updated_at=created,
            )
        )
        for row in related[template.id]:
            if isinstance(row, NetworkInterface):
                mac = random_mac()
                while mac in macs:
                    mac = random_mac()
                macs.add(mac)
                address = ipaddress.IPv4Address(row.ip_address) + nth
                pending.append(
                    _copy(
                        row,
                        id=new_id("interface"),
                        instance_id=instance_id,
                        mac_address=mac,
                        ip_address=str(address),
                        ip_number=int(address),
                        created_at=created,
                    )
                )
            elif isinstance(row, InstanceSecurityGroup):
                pending.append(_copy(row, instance_id=instance_id))
            elif isinstance(row, Volume):
                pending.append(
                    _copy(row, id=new_id("volume"), instance_id=instance_id, created_at=created)
                )
            elif isinstance(row, Job):
                pending.append(
                    _copy(row, id=new_id("job"), instance_id=instance_id, created_at=created)
                )
        if len(pending) >= BATCH:
            _flush(session, pending)
    _flush(session, pending)


def _rows_of(session: Session, instance_id: str) -> list[object]:
    rows: list[object] = []
    for model in (NetworkInterface, InstanceSecurityGroup, Volume, Job):
        rows.extend(session.exec(select(model).where(model.instance_id == instance_id)))
    return rows


def _copy(row: object, **changes: object) -> object:
    model = type(row)
    values = row.model_dump()  # type: ignore[attr-defined]
    values.update(changes)
    return model(**values)


def _flush(session: Session, pending: list[object]) -> None:
    # Parents before children: instances first, then what names them.
    order = {Instance: 0, NetworkInterface: 1, InstanceSecurityGroup: 1, Volume: 1, Job: 1}
    for rank in (0, 1):
        session.add_all([r for r in pending if order[type(r)] == rank])
        session.flush()
    session.commit()
    session.expunge_all()
    pending.clear()


def _state_mix(session: Session) -> None:
    """States as the worker would have left them: launched ones running (a few stopped or
    in error), their root disks attached and launch jobs done; some terminated."""
    ids = list(session.exec(select(Instance.id).order_by(col(Instance.created_at))))
    now = utcnow()
    for state in set(STATE_CYCLE):
        chosen = [i for n, i in enumerate(ids) if STATE_CYCLE[n % len(STATE_CYCLE)] == state]
        for chunk in range(0, len(chosen), 500):
            part = chosen[chunk : chunk + 500]
            values: dict[str, object] = {"state": state}
            if state != InstanceState.pending:
                values["launched_at"] = now
            if state == InstanceState.terminated:
                values["terminated_at"] = now
            if state == InstanceState.error:
                values["state_reason"] = "bench: the guest crashed"
            session.execute(sa.update(Instance).where(col(Instance.id).in_(part)).values(values))
            disk = (
                VolumeState.deleted if state == InstanceState.terminated else VolumeState.attached
            )
            if state != InstanceState.pending:
                session.execute(
                    sa.update(Volume).where(col(Volume.instance_id).in_(part)).values(state=disk)
                )
                session.execute(
                    sa.update(Job).where(col(Job.instance_id).in_(part)).values(state=JobState.done)
                )
            if state in GONE_STATES:  # as compare_and_set leaves a gone one
                mark_memberships(session, part, live=False)
    session.commit()

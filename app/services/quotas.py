"""Quotas: what an account holds (`usage`), what it may hold (`limits`), and the check every
use case that creates something makes before it commits (`check`).

Refusals are 409 `quota_exceeded`: the request is well formed and would succeed once the
account holds less (or its limit is raised), as vdc's other refusals from the current state
("no host has room") are; a 403 would say the key may never do this, a 422 that the body is
wrong. The message names the limit, the usage and what was asked.

Races: `check` first locks the account's row (FOR NO KEY UPDATE on PostgreSQL; on SQLite a
no-op UPDATE, which takes the database's write lock as BEGIN IMMEDIATE would), counts, and
leaves the lock to the caller's commit. Two requests of one account for the last slot run
one after the other, and the second counts the first's row.

The system account (a-shpoolxx, holder of the shared images) has no quota.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import sqlalchemy as sa
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from app.config import Settings
from app.errors import Conflict
from app.ids import SHARED_ACCOUNT_ID
from app.models import Account, AccountQuota, Image, Instance, SecurityGroup, SshKeyPair, Volume
from app.models.instance import GONE_STATES
from app.models.quota import QUOTAS, SINGULAR, UNLIMITED
from app.models.security_group import DEFAULT_GROUP
from app.models.volume import GIB, VolumeState

# Volumes being deleted, like instances being terminated, no longer count: neither can be
# taken back, and the host side is the scheduler's business, not the account's.
RELEASED_VOLUMES = (VolumeState.deleting, VolumeState.deleted)

Numbers = dict[str, int | float]


class QuotaExceeded(Conflict):
    type = "quota_exceeded"


def is_exempt(account_id: str) -> bool:
    return account_id == SHARED_ACCOUNT_ID


def defaults(settings: Settings) -> dict[str, int]:
    return {name: int(getattr(settings, f"quota_{name}")) for name in QUOTAS}


def overrides(session: Session, account_id: str) -> dict[str, int | None]:
    """The account's own limits (None: the default)."""
    row = session.get(AccountQuota, account_id)
    return {name: getattr(row, name) if row else None for name in QUOTAS}


def limits(session: Session, settings: Settings, account_id: str) -> dict[str, int]:
    """Each quota's limit for this account; -1 is unlimited."""
    if is_exempt(account_id):
        return dict.fromkeys(QUOTAS, UNLIMITED)
    own = overrides(session, account_id)
    return {
        name: default if (value := own[name]) is None else value
        for name, default in defaults(settings).items()
    }


# Built once: every launch asks. Parameter: account.
_INSTANCES_HELD = (
    select(
        sa.func.count(),
        sa.func.coalesce(sa.func.sum(Instance.cpu_cores), 0),
        sa.func.coalesce(sa.func.sum(Instance.memory_size), 0),
    )
    .where(col(Instance.account_id) == sa.bindparam("account"))
    .where(col(Instance.state).not_in(GONE_STATES))
)
_VOLUMES_HELD = (
    select(sa.func.coalesce(sa.func.sum(Volume.size), 0))
    .where(col(Volume.account_id) == sa.bindparam("account"))
    .where(col(Volume.state).not_in(RELEASED_VOLUMES))
)


def usage(session: Session, account_id: str, names: Iterable[str] = QUOTAS) -> Numbers:
    """What the account holds now, in each quota's unit (GiB ones may have a fraction)."""
    wanted = set(names)
    used: Numbers = {}
    if wanted & {"instances", "cores", "memory_mib"}:
        count, cores, memory = session.exec(_INSTANCES_HELD, params={"account": account_id}).one()
        used.update(instances=int(count), cores=int(cores), memory_mib=int(memory))
    if "volume_gib" in wanted:
        size = session.scalar(_VOLUMES_HELD, params={"account": account_id})
        used["volume_gib"] = int(size or 0) / GIB  # exact: a power of two
    if wanted & {"images", "image_gib"}:
        count, size = session.exec(
            select(sa.func.count(), sa.func.coalesce(sa.func.sum(Image.file_size), 0)).where(
                Image.account_id == account_id
            )
        ).one()
        used.update(images=int(count), image_gib=int(size) / GIB)
    if "security_groups" in wanted:
        used["security_groups"] = _count(
            session,
            select(sa.func.count())
            .select_from(SecurityGroup)
            .where(SecurityGroup.account_id == account_id)
            .where(SecurityGroup.name != DEFAULT_GROUP),
        )
    if "key_pairs" in wanted:
        used["key_pairs"] = _count(
            session,
            select(sa.func.count())
            .select_from(SshKeyPair)
            .where(SshKeyPair.account_id == account_id),
        )
    return {name: used[name] for name in QUOTAS if name in wanted}


def check(
    session: Session,
    settings: Settings,
    account_id: str,
    *,
    lock: bool = True,
    **wanted: int | float,
) -> None:
    """Refuses (QuotaExceeded) unless the account may hold `wanted` more of each quota named,
    e.g. check(..., instances=1, cores=2, memory_mib=2048, volume_gib=20).

    Call it in the transaction that then creates the rows, before they are added: it locks
    the account until that transaction ends. `lock=False` is for an early look before slow
    work (an upload); the locked check before the commit still decides."""
    unknown = set(wanted) - set(QUOTAS)
    assert not unknown, f"unknown quotas {unknown}"
    if is_exempt(account_id):
        return
    limited = {
        name: limit
        for name, limit in limits(session, settings, account_id).items()
        if name in wanted and limit != UNLIMITED and wanted[name] > 0
    }
    if not limited:
        return
    if lock:
        lock_account(session, account_id)
    used = usage(session, account_id, limited)
    over = [
        _refusal(name, limit, used[name], wanted[name])
        for name, limit in limited.items()
        if used[name] + wanted[name] > limit
    ]
    if over:
        raise QuotaExceeded(f"quota exceeded: {'; '.join(over)} (ask an admin to raise it)")


def _refusal(name: str, limit: int, used: int | float, asked: int | float) -> str:
    """'10 instances allowed, 10 in use, 1 asked'."""
    what = SINGULAR.get(name, QUOTAS[name]) if limit == 1 else QUOTAS[name]
    return f"{limit} {what} allowed, {number_text(used)} in use, {number_text(asked)} asked"


def lock_account(session: Session, account_id: str) -> None:
    """Holds the account's row until the transaction ends, so quota checks of one account
    run one at a time."""
    if session.get_bind().dialect.name == "postgresql":
        # NO KEY: rows that merely reference the account (foreign keys) are not held up.
        session.exec(
            select(Account.id).where(Account.id == account_id).with_for_update(key_share=True)
        ).first()
    else:
        # SQLite has no row locks; a write takes the database's write lock, waiting for
        # (busy_timeout) any other writer, and reads after it see everything committed.
        session.execute(
            sa.update(Account)
            .where(col(Account.id) == account_id)
            .values(description=Account.description)
            .execution_options(synchronize_session=False)
        )


def _count(session: Session, statement: SelectOfScalar[int]) -> int:
    return int(session.scalar(statement) or 0)


def number_text(value: int | float) -> str:
    """3, 0.5, 1.06, 0.00018: whole numbers as they are, others with two significant digits
    at least (a small image is never "0 GiB")."""
    if float(value).is_integer():
        return str(int(value))
    decimals = max(2, 1 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}".rstrip("0").rstrip(".")

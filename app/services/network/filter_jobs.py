"""The jobs that bring security-group filters up to date after a change, queued in the
change's own transaction: one `group_filters` job per group whose members' filters change
(a member came or went from a group its rules name, or its rules changed), and a `filters`
job for an instance whose own groups changed. The jobs run in host_filters.py."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from app.models import Instance, InstanceSecurityGroup, Job, SecurityGroup, SecurityGroupRule
from app.models.instance import GONE_STATES
from app.models.job import JobState
from app.services import jobs

GROUP_FILTERS = "group_filters"
# A group's job waits this long before it runs, so that the changes of a burst (launches
# into one group, a few a second) are taken by one job, which covers every change made
# while it waits. Its members' filters follow a change within this and the job's time; a
# guest takes seconds to boot, and a changed rule shows "within seconds".
GROUP_FILTERS_DELAY = 0.25


def refresh_groups_naming(
    session: Session, group_ids: Iterable[str], besides: str | None = None
) -> None:
    """The members of `group_ids` changed: refresh_group_filters for the groups whose rules
    take one of them as their source (their members' filters list its addresses)."""
    wanted = sorted(set(group_ids))
    if not wanted:
        return
    # Every launch asks this: the statement is built once, with its lists as parameters.
    found = session.exec(_NAMING, params={"wanted": wanted, "besides": besides or ""})
    _queue(session, sorted(found))


def refresh_group_filters(session: Session, group_ids: Iterable[str]) -> None:
    """Queues a `group_filters` job for each group with a live member on a host, which
    rebuilds its members' filters there. One job per group, not one per member: a launch
    into the `default` group used to queue a job for every instance of the account."""
    wanted = sorted(set(group_ids))
    if not wanted:
        return
    with_members = (
        select(SecurityGroup.id)
        .where(col(SecurityGroup.id).in_(wanted))
        .where(_has_live_member(col(SecurityGroup.id), None))
    )
    _queue(session, sorted(session.exec(with_members)))


def live_members(group_id: Any) -> SelectOfScalar[str]:
    """Ids of the group's live members (those whose filters follow its changes); the group:
    an id, or a column to correlate with."""
    return (
        select(Instance.id)
        .join(InstanceSecurityGroup, col(InstanceSecurityGroup.instance_id) == Instance.id)
        .where(InstanceSecurityGroup.group_id == group_id, col(InstanceSecurityGroup.live))
        .where(col(Instance.state).not_in(GONE_STATES))
    )


def _has_live_member(group_id: Any, besides: Any) -> sa.Exists:  # a group id column
    """The group has a live member on a host (other than `besides`: a launching instance
    gets its own filters from its launch job); `besides`: an id, None, or a parameter."""
    member = live_members(group_id).where(col(Instance.host_node_id).is_not(None))
    if besides is not None:
        member = member.where(col(Instance.id) != besides)
    return member.exists()


_NAMING = (
    select(SecurityGroupRule.group_id)
    .where(col(SecurityGroupRule.source_group_id).in_(sa.bindparam("wanted", expanding=True)))
    .where(_has_live_member(col(SecurityGroupRule.group_id), sa.bindparam("besides")))
    .distinct()
)
_WAITING = (
    select(col(Job.security_group_id))
    .where(col(Job.security_group_id).in_(sa.bindparam("groups", expanding=True)))
    .where(Job.kind == GROUP_FILTERS, Job.state == JobState.queued)
    .order_by(col(Job.id))
)
_WAITING_LOCKED = _WAITING.with_for_update()


def _queue(session: Session, group_ids: list[str]) -> None:
    """A job for each group, unless one is queued already: it reads the newest rules and
    members when it runs (on PostgreSQL it stays locked until this transaction ends, so no
    worker claims it before the change commits)."""
    if not group_ids:
        return
    locked = session.get_bind().dialect.name == "postgresql"
    waiting = _WAITING_LOCKED if locked else _WAITING
    covered = set(session.exec(waiting, params={"groups": group_ids}))
    for group_id in group_ids:
        if group_id not in covered:
            jobs.enqueue(
                session, GROUP_FILTERS, None, security_group_id=group_id, delay=GROUP_FILTERS_DELAY
            )


def refresh_filters(session: Session, instance_ids: Iterable[str]) -> None:
    """Queues a `filters` job for each live instance with a host (its own groups changed),
    unless a queued `filters` job or launch will read the newest rules anyway (locked on
    PostgreSQL, as _queue)."""
    live: list[str] = []
    for chunk in _chunks(sorted(set(instance_ids))):
        live += session.exec(
            select(Instance.id)
            .where(col(Instance.id).in_(chunk), col(Instance.state).not_in(GONE_STATES))
            .where(col(Instance.host_node_id).is_not(None))
        )
    covered: set[str | None] = set()
    for chunk in _chunks(live):
        waiting = (
            select(col(Job.instance_id))
            .where(col(Job.instance_id).in_(chunk), col(Job.kind).in_(("filters", "launch")))
            .where(Job.state == JobState.queued)
            .order_by(col(Job.id))
        )
        if session.get_bind().dialect.name == "postgresql":
            waiting = waiting.with_for_update()
        covered.update(session.exec(waiting))
    for instance_id in sorted(set(live) - covered):
        jobs.enqueue(session, "filters", instance_id)


def _chunks(ids: list[str], size: int = 500) -> list[list[str]]:
    return [ids[start : start + size] for start in range(0, len(ids), size)]

"""The job queue: rows in the database, claimed with a lease that the worker renews.

A worker that dies (kill -9, a crash, a lost host) stops renewing; once its lease runs
out another worker claims the job and runs it again from the top, which is safe because
every step is idempotent. Jobs of one instance run one at a time, in order.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from app import job_doorbell
from app.ids import new_id
from app.models import Job
from app.models.common import utcnow
from app.models.job import JobState
from app.services import inserts

MAX_ATTEMPTS = 5


def enqueue(
    session: Session,
    kind: str,
    instance_id: str | None,
    volume_id: str | None = None,
    image_id: str | None = None,
    security_group_id: str | None = None,
    delay: float = 0.0,
) -> Job:
    """Adds a job to the caller's transaction: it exists exactly when the change that
    needed it is committed (and then the idle workers are woken). `delay`:
    seconds before it may run."""
    job = Job(
        id=new_id("job"),
        kind=kind,
        instance_id=instance_id,
        volume_id=volume_id,
        image_id=image_id,
        security_group_id=security_group_id,
    )
    if delay:  # not runnable at the commit: the workers' poll finds it once it is
        job.run_after = job.created_at + timedelta(seconds=delay)
    else:
        session.info[_QUEUED] = session.info.get(_QUEUED, 0) + 1
    inserts.insert(session, job)  # now, in the caller's transaction (not tracked: see there)
    return job


class Wakeup:
    """Wakes this process's idle workers when a transaction that queued a job commits, so
    they need not wait for their next poll. Other processes ring the job process's doorbell
    (app/job_doorbell.py), which wakes them through this too."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._count = 0

    def seen(self) -> int:
        with self._condition:
            return self._count

    def notify(self, jobs: int | None = None) -> None:
        """Wakes as many idle workers as jobs were queued (None: all of them)."""
        with self._condition:
            self._count += 1
            if jobs is None:
                self._condition.notify_all()
            else:
                self._condition.notify(jobs)

    def wait(self, seen: int, timeout: float) -> None:
        """Until a job is queued after `seen()` returned `seen`, or `timeout` seconds."""
        with self._condition:
            if self._count == seen:
                self._condition.wait(timeout)


WAKEUP = Wakeup()
_QUEUED = "vdc.jobs_queued"


@sa.event.listens_for(OrmSession, "after_commit")
def _after_commit(session: OrmSession) -> None:
    queued = session.info.pop(_QUEUED, 0)
    if queued:
        WAKEUP.notify(queued)
        job_doorbell.ring(session.bind, queued)


@sa.event.listens_for(OrmSession, "after_rollback")
def _after_rollback(session: OrmSession) -> None:
    session.info.pop(_QUEUED, None)


def claim(engine: sa.Engine, owner: str, lease_seconds: float) -> Job | None:
    """Takes the oldest runnable job, or None. Safe between threads and processes: one
    UPDATE picks the job and takes it (RETURNING it), so two workers never both win one
    job, and a worker that loses a race does not try the next candidate, and the next: it
    gets another job in the same statement. A job whose instance has an earlier job still
    to finish is not runnable. The statements are built once (parameters: now, owner,
    lease): a claim is the worker's most frequent query."""
    now = utcnow()
    values = {"now": now, "owner": owner, "lease": now + timedelta(seconds=lease_seconds)}
    with Session(engine) as session:
        if session.exec(_ANY_RUNNABLE, params=values).first() is None:
            return None  # nothing to do: found by a read, without waiting to write
        take = _TAKE_LOCKED if engine.dialect.name == "postgresql" else _TAKE
        row = session.execute(take, values).first()
        session.commit()
    # The job as a plain object, not one of a session's: the worker reads it and passes it
    # on (every change to it is a statement of its own).
    return None if row is None else Job(**row._mapping)


_JOBS: sa.Table = Job.__table__  # type: ignore[attr-defined]


def _runnable(job: sa.FromClause) -> SelectOfScalar[str]:
    """Ids of the jobs `job` (the table, or an alias of it) that a worker may take at `now`:
    queued, or running under a lease that ran out; due; first of their instance's (or of
    their security group's: two readings of a group's members must not race to its hosts).
    Core, not the ORM: an ORM UPDATE copies its statement at each run and works out its
    cache key again, which was half of a claim's time."""
    now = sa.bindparam("now", type_=_JOBS.c.run_after.type)
    earlier = _JOBS.alias("earlier")
    pending = (
        sa.select(earlier.c.id)
        .where(
            sa.or_(  # NULL = NULL is not true: a job without an instance (a group) has no order
                earlier.c.instance_id == job.c.instance_id,
                earlier.c.security_group_id == job.c.security_group_id,
            )
        )
        .where(earlier.c.state.in_([JobState.queued, JobState.running]))
        .where(
            sa.or_(
                earlier.c.created_at < job.c.created_at,
                sa.and_(earlier.c.created_at == job.c.created_at, earlier.c.id < job.c.id),
            )
        )
    )
    return (
        select(job.c.id)
        .where(
            sa.or_(
                job.c.state == JobState.queued,
                sa.and_(job.c.state == JobState.running, job.c.lease_expires_at <= now),
            )
        )
        .where(job.c.run_after <= now)
        .where(~pending.exists())
    )


def _take(locked: bool) -> sa.Update:
    """UPDATE of the oldest runnable job to `running` under `owner`'s lease, RETURNING it
    (on PostgreSQL the pick skips rows another worker is taking)."""
    candidate = _JOBS.alias("candidate")
    pick = _runnable(candidate).order_by(candidate.c.created_at, candidate.c.id).limit(1)
    if locked:
        pick = pick.with_for_update(skip_locked=True)
    timestamp = _JOBS.c.updated_at.type
    return (
        sa.update(_JOBS)
        .where(_JOBS.c.id == pick.scalar_subquery())
        .values(
            state=JobState.running,
            lease_owner=sa.bindparam("owner"),
            lease_expires_at=sa.bindparam("lease", type_=timestamp),
            attempts=_JOBS.c.attempts + 1,
            updated_at=sa.bindparam("now", type_=timestamp),
        )
        .returning(*_JOBS.c)
    )


_ANY_RUNNABLE = _runnable(_JOBS).limit(1)
_TAKE = _take(locked=False)
_TAKE_LOCKED = _take(locked=True)


def renew(engine: sa.Engine, job_id: str, owner: str, lease_seconds: float) -> bool:
    """Extends the lease; False when the job is no longer ours (it was reclaimed)."""
    now = utcnow()
    with engine.begin() as connection:
        result = connection.execute(
            sa.update(Job)
            .where(col(Job.id) == job_id)
            .where(col(Job.lease_owner) == owner)
            .where(col(Job.state) == JobState.running)
            .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
        )
    return result.rowcount == 1


def finish(engine: sa.Engine, job_id: str, owner: str, error: str = "") -> None:
    _close(engine, job_id, owner, JobState.failed if error else JobState.done, error)


def retry_later(engine: sa.Engine, job_id: str, owner: str, error: str, delay: float) -> None:
    now = utcnow()
    with engine.begin() as connection:
        connection.execute(
            sa.update(Job)
            .where(col(Job.id) == job_id)
            .where(col(Job.lease_owner) == owner)
            .values(
                state=JobState.queued,
                lease_owner=None,
                lease_expires_at=None,
                last_error=error[:2048],
                run_after=now + timedelta(seconds=delay),
                updated_at=now,
            )
        )


def finish_in(session: Session, job: Job) -> None:
    """Marks the job done in the caller's transaction: a job whose last step commits anyway
    ends in that commit, not in one of its own (the worker then leaves it be)."""
    assert job.lease_owner is not None, "a claimed job"
    # Core, on the session's connection: the job is not one of the session's objects.
    session.connection().execute(_CLOSING, _closing(job.id, job.lease_owner, JobState.done, ""))


def _close(engine: sa.Engine, job_id: str, owner: str, state: JobState, error: str) -> None:
    with engine.begin() as connection:
        connection.execute(_CLOSING, _closing(job_id, owner, state, error))


def _closing(job_id: str, owner: str, state: JobState, error: str) -> dict[str, object]:
    """_CLOSING's parameters."""
    return {
        "job_id": job_id,
        "owner": owner,
        "new_state": state,
        "error": error[:2048],
        "now": utcnow(),
    }


_jobs = Job.__table__  # type: ignore[attr-defined]
_CLOSING = (  # built once: every job ends with it
    sa.update(_jobs)
    .where(_jobs.c.id == sa.bindparam("job_id"))
    .where(_jobs.c.lease_owner == sa.bindparam("owner"))
    .values(
        state=sa.bindparam("new_state", type_=_jobs.c.state.type),
        lease_expires_at=None,
        last_error=sa.bindparam("error", type_=_jobs.c.last_error.type),
        updated_at=sa.bindparam("now", type_=_jobs.c.updated_at.type),
    )
)


def pending_for(session: Session, instance_id: str) -> list[Job]:
    return list(
        session.exec(
            select(Job)
            .where(Job.instance_id == instance_id)
            .where(col(Job.state).in_([JobState.queued, JobState.running]))
        )
    )

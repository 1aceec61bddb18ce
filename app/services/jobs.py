"""The job queue: rows in the database, claimed with a lease that the worker renews.

A worker that dies (kill -9, a crash, a lost host) stops renewing; once its lease runs
out another worker claims the job and runs it again from the top, which is safe because
every step is idempotent. Jobs of one instance run one at a time, in order.
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlmodel import Session, col, or_, select

from app.ids import new_id
from app.models import Job
from app.models.common import utcnow
from app.models.job import JobState

MAX_ATTEMPTS = 5


def enqueue(
    session: Session,
    kind: str,
    instance_id: str | None,
    volume_id: str | None = None,
    image_id: str | None = None,
) -> Job:
    """Adds a job to the caller's transaction: it exists exactly when the change that
    needed it is committed."""
    job = Job(
        id=new_id("job"),
        kind=kind,
        instance_id=instance_id,
        volume_id=volume_id,
        image_id=image_id,
    )
    session.add(job)
    return job


def claim(engine: sa.Engine, owner: str, lease_seconds: float) -> Job | None:
    """Takes the oldest runnable job, or None. Safe between threads and processes: the
    claim is a compare-and-set UPDATE, so two workers never both win one job."""
    now = utcnow()
    with Session(engine, expire_on_commit=False) as session:
        runnable = (
            select(Job)
            .where(
                or_(
                    Job.state == JobState.queued,
                    sa.and_(col(Job.state) == JobState.running, col(Job.lease_expires_at) <= now),
                )
            )
            .where(col(Job.run_after) <= now)
            .order_by(col(Job.created_at), col(Job.id))
            .limit(8)
        )
        if session.get_bind().dialect.name == "postgresql":
            runnable = runnable.with_for_update(skip_locked=True)
        candidates = list(session.exec(runnable))
        for job in candidates:
            if job.instance_id and _earlier_job_pending(session, job):
                continue
            claimed = session.exec(
                sa.update(Job)
                .where(col(Job.id) == job.id)
                .where(col(Job.state) == job.state)
                .where(col(Job.attempts) == job.attempts)  # unchanged since we read it
                .values(
                    state=JobState.running,
                    lease_owner=owner,
                    lease_expires_at=now + timedelta(seconds=lease_seconds),
                    attempts=job.attempts + 1,
                    updated_at=now,
                )
            )
            if claimed.rowcount == 1:
                session.commit()
                session.refresh(job)
                return job
        session.rollback()
    return None


def _earlier_job_pending(session: Session, job: Job) -> bool:
    """Jobs of one instance run in the order they were asked for."""
    earlier = session.exec(
        select(Job.id)
        .where(Job.instance_id == job.instance_id)
        .where(col(Job.state).in_([JobState.queued, JobState.running]))
        .where(
            or_(
                col(Job.created_at) < job.created_at,
                sa.and_(col(Job.created_at) == job.created_at, col(Job.id) < job.id),
            )
        )
        .limit(1)
    ).first()
    return earlier is not None


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


def _close(engine: sa.Engine, job_id: str, owner: str, state: JobState, error: str) -> None:
    with engine.begin() as connection:
        connection.execute(
            sa.update(Job)
            .where(col(Job.id) == job_id)
            .where(col(Job.lease_owner) == owner)
            .values(
                state=state, lease_expires_at=None, last_error=error[:2048], updated_at=utcnow()
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

"""Two workers race for one job, on SQLite and PostgreSQL, made deterministic: each claimer
is held right after it has read the runnable jobs and before its compare-and-set UPDATE,
until both have read. Exactly one wins, every time: for a queued job (the state guard
decides) and for a running job whose lease ran out (its state does not change when it is
reclaimed, so the attempts guard decides).

On PostgreSQL the claim's SELECT ... FOR UPDATE SKIP LOCKED means the second claimer may not
see the row at all; exactly one still wins. On SQLite both read the row and both try the
UPDATE: the compare-and-set alone stands between them.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.sql import Select, Update
from sqlmodel import Session

from app.db import session_scope
from app.ids import new_id
from app.models import Job
from app.models.common import utcnow
from app.models.job import JobState
from app.services import jobs

CLAIMERS = ("worker-a", "worker-b")
ROUNDS = 5
HOLD_TIMEOUT = 30  # generous: a claimer that never arrives breaks the barrier, failing loudly


class HeldClaims:
    """Replaces the Session that jobs.claim uses: the first SELECT a claimer thread runs (the
    runnable jobs) is read to the end, then the thread waits until every claimer has read.
    Records each compare-and-set UPDATE the claimers ran, with the rows it changed."""

    def __init__(self, parties: int) -> None:
        self.barrier = threading.Barrier(parties, timeout=HOLD_TIMEOUT)
        self.local = threading.local()
        self.read: dict[str, list[str]] = {}
        self.updates: list[tuple[str, int]] = []
        self.lock = threading.Lock()
        holder = self

        class HeldSession(Session):
            def exec(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
                result = super().exec(statement, *args, **kwargs)
                name = threading.current_thread().name
                if isinstance(statement, Update):
                    with holder.lock:
                        holder.updates.append((name, result.rowcount))
                    return result
                if isinstance(statement, Select) and not getattr(holder.local, "held", False):
                    holder.local.held = True
                    rows = list(result)  # the whole read happens before the hold
                    with holder.lock:
                        holder.read[name] = [row.id for row in rows]
                    holder.barrier.wait()
                    return rows
                return result

        self.session_class = HeldSession


def add_job(engine: sa.Engine, **fields: Any) -> str:
    job_id = new_id("job")
    with session_scope(engine) as session:
        session.add(Job(id=job_id, kind="launch", instance_id=None, **fields))
    return job_id


def race(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> tuple[list[Job], HeldClaims]:
    held = HeldClaims(len(CLAIMERS))
    monkeypatch.setattr(jobs, "Session", held.session_class)

    def claim(owner: str) -> Job | None:
        threading.current_thread().name = owner
        return jobs.claim(engine, owner, lease_seconds=30)

    with ThreadPoolExecutor(max_workers=len(CLAIMERS)) as pool:
        results = list(pool.map(claim, CLAIMERS))
    monkeypatch.undo()
    return [job for job in results if job is not None], held


def row(engine: sa.Engine, job_id: str) -> tuple[Any, ...]:
    with engine.connect() as connection:
        return tuple(
            connection.execute(
                sa.text("SELECT state, lease_owner, attempts FROM jobs WHERE id = :id"),
                {"id": job_id},
            ).one()
        )


def check_one_winner(
    engine: sa.Engine, job_id: str, attempts_before: int, winners: list[Job], held: HeldClaims
) -> None:
    assert sorted(held.read) == sorted(CLAIMERS), "a claimer never reached its read"
    assert [job.id for job in winners] == [job_id], (
        f"{len(winners)} claimers won job {job_id}; updates: {held.updates}"
    )
    winner = winners[0]
    assert row(engine, job_id) == ("running", winner.lease_owner, attempts_before + 1)
    assert winner.attempts == attempts_before + 1
    assert sum(changed for _, changed in held.updates) == 1, held.updates
    if engine.dialect.name == "sqlite":
        # Both read the job, both tried the compare-and-set: the guards alone decided.
        assert all(job_id in ids for ids in held.read.values()), held.read
        assert sorted(name for name, _ in held.updates) == sorted(CLAIMERS), held.updates


def test_a_queued_job_is_claimed_by_exactly_one_of_two_racing_workers(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(ROUNDS):
        job_id = add_job(engine)
        winners, held = race(engine, monkeypatch)
        check_one_winner(engine, job_id, 0, winners, held)
        jobs.finish(engine, job_id, winners[0].lease_owner or "")


def test_a_job_whose_lease_ran_out_is_reclaimed_by_exactly_one_of_two_racing_workers(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(ROUNDS):
        # A worker claimed it twice already and died: running, its lease over.
        job_id = add_job(
            engine,
            state=JobState.running,
            attempts=2,
            lease_owner="dead-worker",
            lease_expires_at=utcnow() - timedelta(seconds=5),
        )
        winners, held = race(engine, monkeypatch)
        check_one_winner(engine, job_id, 2, winners, held)
        jobs.finish(engine, job_id, winners[0].lease_owner or "")

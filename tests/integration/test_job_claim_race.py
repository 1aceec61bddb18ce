"""Two workers race for one job, on SQLite and PostgreSQL, made deterministic: each claimer
is held after its read ("is any job runnable?") found the job and right before it runs the
take (one UPDATE ... RETURNING that picks the oldest runnable job and takes it), until both
have read; then both take at once. Exactly one wins, every time: for a queued job and for a
running job whose lease ran out (its state does not change when it is reclaimed).

Both claimers saw the job runnable, so the take itself must decide: its UPDATE checks again,
in the statement that writes, that the job is still runnable. On PostgreSQL the pick is
FOR UPDATE SKIP LOCKED, so the loser skips the row the winner is taking (or finds it taken);
on SQLite writers go one at a time, and the loser's take finds it running under a fresh lease.
(Tried: a take that updates the id its read found, without checking again, lets both win on
both databases; a take without SKIP LOCKED lets both win on PostgreSQL.)
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


class Rows(list[Any]):
    """A read's rows, read to the end before the hold, as the claim uses them."""

    def first(self) -> Any:
        return self[0] if self else None


class HeldClaims:
    """Replaces the Session that jobs.claim uses: a claimer's read is read to the end and
    recorded; its take (the UPDATE) waits until every claimer is about to take, then runs.
    Records each take with the number of jobs it took."""

    def __init__(self, parties: int) -> None:
        self.barrier = threading.Barrier(parties, timeout=HOLD_TIMEOUT)
        self.read: dict[str, list[str]] = {}
        self.takes: list[tuple[str, int]] = []
        self.lock = threading.Lock()
        holder = self

        class HeldSession(Session):
            def exec(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
                result = super().exec(statement, *args, **kwargs)
                if not isinstance(statement, Select):
                    return result
                rows = Rows(result.all())
                with holder.lock:
                    holder.read[threading.current_thread().name] = [str(r) for r in rows]
                return rows

            def execute(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
                if not isinstance(statement, Update):
                    return super().execute(statement, *args, **kwargs)
                holder.barrier.wait()  # both have read; now both take at once
                frozen = super().execute(statement, *args, **kwargs).freeze()
                with holder.lock:
                    holder.takes.append((threading.current_thread().name, len(frozen.data)))
                return frozen()

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
    # Both saw the job runnable and both took at once: the take alone decided.
    assert held.read == {name: [job_id] for name in CLAIMERS}, held.read
    assert sorted(name for name, _ in held.takes) == sorted(CLAIMERS), held.takes
    assert [job.id for job in winners] == [job_id], (
        f"{len(winners)} claimers won job {job_id}; takes: {held.takes}"
    )
    winner = winners[0]
    assert row(engine, job_id) == ("running", winner.lease_owner, attempts_before + 1)
    assert winner.attempts == attempts_before + 1
    assert sum(taken for _, taken in held.takes) == 1, held.takes


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

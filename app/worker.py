"""The job worker: threads that claim jobs, one that keeps their leases alive, one that runs
the periodic sync. `vdc serve` runs it in its job process (app/job_process.py), the tests
inside the app (app/main.py)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from datetime import timedelta

import sqlalchemy as sa

from app.config import Settings
from app.models import Job
from app.models.common import utcnow
from app.services import hypervisors, jobs
from app.services.compute import lifecycle, sync
from app.services.images import capture_jobs
from app.services.jobs_context import JobContext
from hypervisor.errors import HostUnreachable

log = logging.getLogger("vdc.worker")
POLL_SECONDS = 0.25
HOST_WAIT = timedelta(hours=1)


# Jobs are background work: on a busy host the answers (the API's, the metadata
# service's to booting guests) go first. Linux gives each thread its own nice value.
JOB_NICENESS = 5


def _yield_to_answers() -> None:
    try:
        thread = threading.get_native_id()
        os.setpriority(
            os.PRIO_PROCESS, thread, os.getpriority(os.PRIO_PROCESS, thread) + JOB_NICENESS
        )
    except OSError:  # pragma: no cover - not Linux, or not allowed: the same priority then
        pass


class Worker:
    def __init__(self, settings: Settings, engine: sa.Engine) -> None:
        self.ctx = JobContext(settings=settings, engine=engine)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        settings = self.ctx.settings
        for n in range(settings.workers):
            self._spawn(self._claim_loop, f"vdc-job-{n}")
        if settings.workers:
            self._spawn(self._renew_loop, "vdc-lease")
        self._spawn(self._sync_loop, "vdc-sync")

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        jobs.WAKEUP.notify()
        for thread in self._threads:
            thread.join(timeout)

    def _spawn(self, target: object, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def _claim_loop(self) -> None:
        _yield_to_answers()
        while not self._stop.is_set():
            seen = jobs.WAKEUP.seen()
            try:
                job = jobs.claim(self.ctx.engine, self.owner, self.ctx.settings.job_lease_seconds)
            except sa.exc.SQLAlchemyError:
                log.exception("claiming a job failed")
                job = None
            if job is None:
                # Until this process queues a job, or the next poll (other processes' jobs).
                jobs.WAKEUP.wait(seen, POLL_SECONDS)
                continue
            with self._lock:
                self._in_flight.add(job.id)
            try:
                self._execute(job)
            finally:
                with self._lock:
                    self._in_flight.discard(job.id)

    def _execute(self, job: Job) -> None:
        engine, owner = self.ctx.engine, self.owner
        try:
            handler = capture_jobs.run if job.kind in capture_jobs.KINDS else lifecycle.run
            closed = hypervisors.rechecking_hosts(lambda: handler(self.ctx, job), job.id)
        except HostUnreachable as error:
            # A host that is down comes back: its work waits for it (an hour at most),
            # without counting as the job's own failures.
            if job.attempts < jobs.MAX_ATTEMPTS or utcnow() - job.created_at < HOST_WAIT:
                delay = min(30.0, 2.0**job.attempts)
                log.warning(
                    "job %s (%s): host unreachable, retry in %.0fs: %s",
                    job.id,
                    job.kind,
                    delay,
                    error,
                )
                jobs.retry_later(engine, job.id, owner, str(error), delay)
                return
            self._fail(
                job, f"{job.kind} failed: host unreachable after {job.attempts} attempts: {error}"
            )
        except Exception as error:  # every failure ends in `error` with a reason, never stuck
            log.exception("job %s (%s) failed", job.id, job.kind)
            self._fail(job, f"{job.kind} failed: {error}")
        else:
            if not closed:  # a launch ends its job in its own last commit
                jobs.finish(engine, job.id, owner)

    def _fail(self, job: Job, reason: str) -> None:
        # A failed capture ends its image in error; its instance stays as it was.
        if job.kind in capture_jobs.KINDS:
            capture_jobs.fail(self.ctx, job, reason)
        else:
            lifecycle.fail(self.ctx, job, reason)
        jobs.finish(self.ctx.engine, job.id, self.owner, error=reason)

    def _renew_loop(self) -> None:
        interval = self.ctx.settings.job_lease_seconds / 3
        while not self._stop.wait(interval):
            with self._lock:
                in_flight = list(self._in_flight)
            for job_id in in_flight:
                try:
                    jobs.renew(
                        self.ctx.engine, job_id, self.owner, self.ctx.settings.job_lease_seconds
                    )
                except sa.exc.SQLAlchemyError:
                    log.exception("renewing the lease of %s failed", job_id)

    def _sync_loop(self) -> None:
        while not self._stop.wait(self.ctx.settings.sync_interval):
            try:
                sync.sync_all(self.ctx)
            except Exception:
                log.exception("sync failed")

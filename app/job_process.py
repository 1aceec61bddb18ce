"""`vdc serve`'s job workers run in a child process of their own (`python -m
app.job_process`), beside the API's.

Why: a launch costs the API about a third of its CPU and the worker the rest, and in one
process both share one interpreter lock, so the server used one of the machine's cores
and every accepted request waited behind the workers' turn. In two processes the API
answers on one core while the jobs run on another (docs/benchmarks.md, launches).

The API's commits ring the child's doorbell (app/job_doorbell.py) so it starts a job at
once; SQLite writers of both processes queue on one file lock (app/db.py, WriterQueue);
the launch durations the workers measure reach the API's GET /metrics through a file the
child writes every second (app/metrics.py, job_metrics_text).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

from app import heap, job_doorbell, metrics
from app.child_process import ChildProcess
from app.config import Settings
from app.db import engine_for, job_pool
from app.services import jobs
from app.worker import Worker

log = logging.getLogger("vdc.jobs")
PUBLISH_SECONDS = 1.0


class JobProcess(ChildProcess):
    def __init__(self, settings: Settings) -> None:
        super().__init__("app.job_process", "the job process")
        self.settings = settings

    def before_spawn(self) -> None:
        self.settings.job_metrics_file.unlink(missing_ok=True)

    def ready(self) -> bool:
        """Its workers run: it writes its metrics file once they started."""
        return self.settings.job_metrics_file.exists()


def run(settings: Settings, stop: threading.Event) -> None:
    """The workers, the doorbell and the metrics file, until `stop` is set."""
    engine = engine_for(settings, job_pool(settings.workers))
    job_doorbell.register(engine, None)  # its own commits wake its workers in-process
    worker = Worker(settings, engine)
    worker.start()
    doorbell = job_doorbell.open_listener(settings.job_doorbell, jobs.WAKEUP.notify)
    if doorbell is not None:
        doorbell.start()
    heap.freeze_start_up()
    published = b""
    try:
        while True:
            text = metrics.job_metrics_text()
            if text != published:
                try:
                    metrics.publish(settings.job_metrics_file, text)
                    published = text
                except OSError:
                    log.exception("writing the job metrics failed; trying again in a second")
            if stop.wait(PUBLISH_SECONDS):
                break
    finally:
        if doorbell is not None:
            doorbell.close()
        worker.stop()
        engine.dispose()


def main() -> None:
    """Runs until SIGTERM, or until `vdc serve` (its parent) goes away."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = Settings()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    parent = os.getppid()

    def watch_parent() -> None:
        while not stop.wait(1.0):
            if os.getppid() != parent:  # vdc serve died without telling us
                stop.set()

    threading.Thread(target=watch_parent, name="vdc-parent", daemon=True).start()
    run(settings, stop)
    sys.exit(0)


if __name__ == "__main__":
    main()

"""Builds the FastAPI application; `vdc serve` and the tests both start here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from app import __version__, signed_in
from app.api import docs, health, metrics
from app.api.errors import install_error_handlers
from app.api.main import api_router
from app.api.request_guards import RequestGuards
from app.config import Settings
from app.db import API_POOL, engine_for
from app.metrics import HttpMetrics
from app.services.compute.console_proxy import Slots
from app.web.router import web_router
from app.worker import Worker

STATIC_DIR = Path(__file__).parent / "static"

DESCRIPTION = """\
vdc launches KVM instances from machine images through libvirt.

Authenticate every call with an API key: `Authorization: Bearer vdc_...`
(click **Authorize**). The first admin key is in `$VDC_DATA_DIR/admin.key`;
`vdc-manage account add NAME` makes more.
"""


def create_app(settings: Settings | None = None, jobs_in_process: bool = True) -> FastAPI:
    """`jobs_in_process`: the job workers run with the app (the tests); `vdc serve` runs
    them in a process of their own instead (app/job_process.py)."""
    settings = settings or Settings()
    engine = engine_for(settings, API_POOL)

    worker = Worker(settings, engine) if jobs_in_process else None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if worker is not None:
            worker.start()
        yield
        if worker is not None:
            worker.stop()
        engine.dispose()

    app = FastAPI(
        title="vdc",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.worker = worker
    app.state.console_slots = Slots(settings.console_max_connections)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(docs.router)
    app.include_router(api_router)
    app.include_router(web_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(RequestGuards, signed_in=signed_in.checker(settings, engine))
    # Outermost: every request counts, those the guards refuse too.
    app.add_middleware(HttpMetrics)
    return app

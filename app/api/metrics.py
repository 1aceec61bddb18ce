"""GET /metrics: Prometheus' text format, for an admin key (see README, Metrics)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from app import metrics
from app.api.deps import AdminAccount, SessionDep, SettingsDep
from app.api.errors import ERROR_RESPONSES
from app.services import gauges

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "content": {metrics.CONTENT_TYPE: {"schema": {"type": "string"}}},
            "description": "Prometheus text exposition format",
        },
        **{code: ERROR_RESPONSES[code] for code in (401, 403)},
    },
)
def scrape(
    request: Request, session: SessionDep, settings: SettingsDep, _admin: AdminAccount
) -> Response:
    """Request counts and latencies by route (this process, since it started), launch
    durations (the job workers, since they started, as of their last second), metadata
    requests and latencies (the metadata process, since it started, as of its last
    second), and instances, hosts and jobs (the database, now).
    Admins only: scrape with an admin key as the bearer token."""
    # `vdc serve` runs the job workers in a process of their own (app/job_process.py).
    job_metrics = settings.job_metrics_file if request.app.state.worker is None else None
    body = metrics.render(gauges.readings(session), settings.metadata_metrics_file, job_metrics)
    return Response(body, media_type=metrics.CONTENT_TYPE)

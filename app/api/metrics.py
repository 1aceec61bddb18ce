"""GET /metrics: Prometheus' text format, for an admin key (see README, Metrics)."""

from __future__ import annotations

from fastapi import APIRouter, Response

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
def scrape(session: SessionDep, settings: SettingsDep, _admin: AdminAccount) -> Response:
    """Request counts and latencies by route and launch durations (this process, since it
    started), metadata requests and latencies (the metadata process, since it started, as
    of its last second), and instances, hosts and jobs (the database, now).
    Admins only: scrape with an admin key as the bearer token."""
    body = metrics.render(gauges.readings(session), settings.metadata_metrics_file)
    return Response(body, media_type=metrics.CONTENT_TYPE)

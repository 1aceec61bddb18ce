"""An instance's screen in the browser: the Screen page (noVNC, app/static/ui/screen.js)
and the one-time tickets it asks for each time it connects, or reconnects after the guest
was stopped and started (the WebSocket itself is app/web/screen_socket.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from app.errors import AppError
from app.models import Instance
from app.services import access
from app.services.compute import consoles
from app.web.pages import DB, PageRoute, User, check_csrf, render

router = APIRouter(route_class=PageRoute, include_in_schema=False)


@router.get("/instances/{instance_id}/screen")
def screen(request: Request, instance_id: str, session: DB, user: User) -> Response:
    instance = access.get(session, user.account, Instance, instance_id)
    return render(request, "screen.html", {"instance": instance})


@router.post("/instances/{instance_id}/screen/ticket")
def ticket(request: Request, instance_id: str, session: DB, user: User) -> JSONResponse:
    """A ticket for this browser's session, as JSON (the page's script asks, not a form):
    409 with the reason while the instance is not running."""
    try:
        check_csrf(request, user)
        issued = consoles.issue(session, user.account, instance_id, web_session_id=user.session_id)
    except AppError as refusal:
        return JSONResponse(
            {"type": refusal.type, "detail": refusal.detail},
            refusal.status_code,
            headers={"Cache-Control": "no-store"},
        )
    return JSONResponse(
        {"ticket": issued.token, "expires_at": issued.expires_at.isoformat()},
        headers={"Cache-Control": "no-store"},
    )

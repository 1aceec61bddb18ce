"""Signing in and out."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from app.errors import Unauthorized
from app.web import session as web_session
from app.web.pages import DB, PageRoute, User, form_of, render

router = APIRouter(route_class=PageRoute, include_in_schema=False)


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/instances", status_code=303)


@router.get("/login")
def login_form(request: Request, next: str = "/instances") -> Response:
    return render(request, "login.html", {"next": _safe_next(next), "errors": {}})


@router.post("/login")
async def login(request: Request, session: DB) -> Response:
    form = await request.form()
    key, target = str(form.get("api_key", "")), _safe_next(str(form.get("next", "/instances")))
    try:
        cookie = web_session.sign_in(session, request.app.state.settings, key)
    except Unauthorized as refused:
        why = "this API key is not valid" if refused.detail == "invalid API key" else refused.detail
        errors = {"api_key": why}
        return render(request, "login.html", {"next": target, "errors": errors}, status=401)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        web_session.COOKIE,
        cookie,
        max_age=web_session.LIFETIME,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout")
async def logout(request: Request, session: DB, user: User) -> Response:
    """Ends this browser's session on the server, not only its cookie."""
    await form_of(request, user)
    web_session.sign_out(session, user)
    return signed_out()


def signed_out() -> RedirectResponse:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(web_session.COOKIE, path="/")
    return response


def _safe_next(target: str) -> str:
    """Only a path on this site (no open redirect to another host)."""
    return target if target.startswith("/") and not target.startswith("//") else "/instances"

"""Signing in and out.

The sign-in form is protected against login forgery (another site signing a visitor in to
the attacker's account): a POST whose Origin (or Referer) names another host is refused,
and the form must carry the pre-session token this site's own sign-in page handed out in
a cookie and a hidden field.
"""

from __future__ import annotations

import hmac
import re
import secrets
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from app.errors import Forbidden, Unauthorized
from app.web import session as web_session
from app.web.pages import DB, PageRoute, User, form_of, render

router = APIRouter(route_class=PageRoute, include_in_schema=False)
LOGIN_COOKIE = "vdc_login"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{32,64}$")


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/instances", status_code=303)


@router.get("/login")
def login_form(request: Request, next: str = "/instances") -> Response:
    token = request.cookies.get(LOGIN_COOKIE, "")
    if not _TOKEN.match(token):
        token = secrets.token_urlsafe(32)
    response = _form(request, _safe_next(next), token, {})
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/login",
    )
    return response


@router.post("/login")
async def login(request: Request, session: DB) -> Response:
    _refuse_another_site(request)
    form = await request.form()
    token = request.cookies.get(LOGIN_COOKIE, "")
    if not _TOKEN.match(token) or not hmac.compare_digest(str(form.get("login_csrf", "")), token):
        raise Forbidden(
            "this sign-in form expired or came from another site; reload the page and sign in"
        )
    key, target = str(form.get("api_key", "")), _safe_next(str(form.get("next", "/instances")))
    try:
        cookie = web_session.sign_in(session, request.app.state.settings, key)
    except Unauthorized as refused:
        why = "this API key is not valid" if refused.detail == "invalid API key" else refused.detail
        return _form(request, target, token, {"api_key": why}, status=401)
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


def _form(
    request: Request, target: str, token: str, errors: dict[str, str], status: int = 200
) -> Response:
    context = {"next": target, "errors": errors, "login_csrf": token}
    return render(request, "login.html", context, status=status)


def _refuse_another_site(request: Request) -> None:
    """Browsers send Origin with a form's POST (Referer when some do not); when either is
    there it must name this host. Behind a proxy, the proxy must pass the Host header on.
    "null" is refused: a sandboxed frame's origin (pages sent with `Referrer-Policy:
    no-referrer` would get it too, so vdc's pages do not send that policy)."""
    claimed = request.headers.get("origin") or request.headers.get("referer")
    if claimed is None:
        return  # not a browser, or one that hides both: the form token decides
    host = request.headers.get("host", "").lower()
    try:
        origin_host = urlsplit(claimed).netloc.lower() if claimed != "null" else ""
    except ValueError:
        origin_host = ""
    if not host or origin_host != host:
        raise Forbidden(
            f"this sign-in came from another site ({claimed[:100]}), not from {host}: "
            "sign in on this site's own page"
        )


def _safe_next(target: str) -> str:
    """Only a path on this site (no open redirect to another host)."""
    return target if target.startswith("/") and not target.startswith("//") else "/instances"

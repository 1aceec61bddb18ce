"""What every page shares: templates, the signed-in account, CSRF, and errors shown as
pages or next to form fields (never as a raw JSON page)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlmodel import Session

from app.db import get_session
from app.errors import AppError, Forbidden
from app.services.hypervisors import as_app_error
from app.web import session as web_session
from app.web import timestamps
from app.web.session import WebSession
from hypervisor.errors import HypervisorError

log = logging.getLogger("vdc.web")
TEMPLATES = Jinja2Templates(directory=Path(__file__).parent.parent / "templates")
TEMPLATES.env.filters.update(when=timestamps.when, ago=timestamps.ago)
# Pages use only the package's own files: no CDN, no inline script.
CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'"


class SignInRequired(Exception):
    """No valid session: the page answers with a redirect to the sign-in form."""


class PageRoute(APIRoute):
    """A page's errors become pages: sign-in redirects, and the error page with the
    status code for what the services refuse."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except SignInRequired:
                target = quote(request.url.path)
                return RedirectResponse(f"/login?next={target}", status_code=303)
            except HypervisorError as error:
                response = error_page(request, as_app_error(error))
            except AppError as error:
                response = error_page(request, error)
            response.headers.setdefault("Content-Security-Policy", CSP)
            response.headers.setdefault("X-Frame-Options", "DENY")
            return response

        return page_handler


def error_page(request: Request, error: AppError) -> HTMLResponse:
    return render(
        request,
        "error.html",
        {"status": error.status_code, "detail": error.detail},
        status=error.status_code,
    )


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    status: int = 200,
) -> HTMLResponse:
    user = getattr(request.state, "web", None)
    values = {
        "request": request,
        "user": user,
        "csrf": user.csrf if user else "",
        **(context or {}),
    }
    return TEMPLATES.TemplateResponse(request, template, values, status_code=status)


def signed_in(request: Request, session: Annotated[Session, Depends(get_session)]) -> WebSession:
    found = web_session.read(
        session, request.app.state.settings, request.cookies.get(web_session.COOKIE)
    )
    if found is None:
        raise SignInRequired()
    request.state.web = found
    return found


def admin_only(user: Annotated[WebSession, Depends(signed_in)]) -> WebSession:
    if not user.account.is_admin:
        raise Forbidden("this page is for admins")
    return user


User = Annotated[WebSession, Depends(signed_in)]
Admin = Annotated[WebSession, Depends(admin_only)]
DB = Annotated[Session, Depends(get_session)]


async def form_of(request: Request, user: WebSession) -> dict[str, str]:
    """The posted form's fields, after the CSRF check (a token only this session knows)."""
    form = await request.form()
    token = form.get("csrf") or request.headers.get("x-csrf-token")
    if token != user.csrf:
        raise Forbidden("the form expired or came from elsewhere; reload the page and retry")
    return {key: value for key, value in form.items() if isinstance(value, str)}


def check_csrf(request: Request, user: WebSession) -> None:
    if request.headers.get("x-csrf-token") != user.csrf:
        raise Forbidden("the form expired or came from elsewhere; reload the page and retry")


def redirect(path: str, notice: str = "") -> RedirectResponse:
    target = f"{path}?notice={quote(notice)}" if notice else path
    return RedirectResponse(target, status_code=303)


def field_errors(error: Exception, fields: Iterable[str]) -> dict[str, str]:
    """Which form field an error concerns ("" for the form as a whole).

    Validation errors name their field; a service's refusal is matched by the field's
    name (or its words) appearing in the message, e.g. "unknown instance type 'x'"."""
    if isinstance(error, ValidationError):
        found: dict[str, str] = {}
        for problem in error.errors():
            where = [str(part) for part in problem.get("loc", ())]
            message = str(problem.get("msg", "invalid")).removeprefix("Value error, ")
            field = next((f for f in fields if f in where), None)
            if field is None:  # a check across fields: its message names the field
                field = next(iter(_by_words(message, fields)), "")
            found.setdefault(field, message)
        return found
    detail = error.detail if isinstance(error, AppError) else str(error)
    return {next(iter(_by_words(detail, fields)), ""): detail}


def _by_words(message: str, fields: Iterable[str]) -> list[str]:
    lowered = message.lower()
    return [
        field
        for field in fields
        if field in lowered
        or field.removesuffix("_ids").removesuffix("_id").replace("_", " ") in lowered
    ]

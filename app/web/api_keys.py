"""API keys: the signed-in account's keys, issuing another (shown once), revoking one."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from app.errors import AppError
from app.models.account import ApiKeyCreate
from app.services.identity import accounts, api_keys
from app.services.listing import MAX_LIMIT, PageRequest
from app.web.auth import signed_out
from app.web.pages import DB, PageRoute, User, field_errors, form_of, redirect, render

router = APIRouter(route_class=PageRoute, include_in_schema=False)


def _page(request: Request, session: DB, user: User, **extra: object) -> Response:
    rows, _ = api_keys.list_keys(
        session, user.account, PageRequest(limit=MAX_LIMIT), account_id=user.account.id
    )
    context = {"api_keys": rows, "values": {}, "errors": {}, "notice": "", "new_key": "", **extra}
    return render(request, "api_keys.html", context, status=400 if extra.get("errors") else 200)


@router.get("/api_keys")
def list_page(request: Request, session: DB, user: User, notice: str = "") -> Response:
    return _page(request, session, user, notice=notice)


@router.post("/api_keys")
async def issue(request: Request, session: DB, user: User) -> Response:
    """Answers with the page holding the new key: not a redirect, so the key is in no URL
    and no history; vdc keeps only its hash."""
    form = await form_of(request, user)
    try:
        body = ApiKeyCreate(name=form.get("name", ""))
        row, key = accounts.issue_key(session, user.account, body.name)
    except (ValidationError, AppError) as error:
        session.rollback()
        return _page(request, session, user, values=form, errors=field_errors(error, ("name",)))
    response = _page(request, session, user, new_key=key, notice=f"issued {row.id}")
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/api_keys/{key_id}/revoke")
async def revoke(request: Request, key_id: str, session: DB, user: User) -> Response:
    await form_of(request, user)
    api_keys.revoke(session, user.account, key_id)
    if key_id == user.key_id:  # the key this browser signed in with: its session ended
        return signed_out()
    return redirect("/api_keys", f"revoked {key_id}")

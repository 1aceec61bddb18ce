"""Security groups: list, create, and the rules editor (Wakame-vdc's text form)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from app.errors import AppError
from app.models import SecurityGroup
from app.models.security_group import SecurityGroupCreate, SecurityGroupUpdate
from app.services import access
from app.services.listing import MAX_LIMIT, PageRequest
from app.services.network import security_groups
from app.web.pages import DB, PageRoute, User, field_errors, form_of, redirect, render

router = APIRouter(route_class=PageRoute, include_in_schema=False)
FIELDS = ("name", "description", "rules_text")


def _errors(error: Exception) -> dict[str, str]:
    found = field_errors(error, FIELDS)
    # Rule errors name a line ("line 2 ('tcp:...'): ..."): they concern the rules box.
    if "" in found and ("line " in found[""] or "rule" in found[""]):
        found["rules_text"] = found.pop("")
    return found


@router.get("/security_groups")
def list_page(request: Request, session: DB, user: User, notice: str = "") -> Response:
    rows, _ = security_groups.list_groups(session, user.account, PageRequest(limit=MAX_LIMIT))
    session.commit()  # the default group, on an account's first look
    groups = security_groups.public(session, rows)
    context = {"groups": groups, "values": {}, "errors": {}, "notice": notice}
    return render(request, "security_groups.html", context)


@router.post("/security_groups")
async def create(request: Request, session: DB, user: User) -> Response:
    form = await form_of(request, user)
    try:
        body = SecurityGroupCreate(
            name=form.get("name", ""),
            description=form.get("description", ""),
            rules_text=form.get("rules_text", ""),
        )
        group = security_groups.create_group(
            session, request.app.state.settings, user.account, body
        )
    except (ValidationError, AppError) as error:
        session.rollback()
        rows, _ = security_groups.list_groups(session, user.account, PageRequest(limit=MAX_LIMIT))
        context = {
            "groups": security_groups.public(session, rows),
            "values": form,
            "errors": _errors(error),
            "notice": "",
        }
        return render(request, "security_groups.html", context, status=400)
    return redirect(f"/security_groups/{group.id}", f"created {group.id}")


@router.get("/security_groups/{group_id}")
def edit_form(
    request: Request, group_id: str, session: DB, user: User, notice: str = ""
) -> Response:
    group = security_groups.public(
        session, [access.get(session, user.account, SecurityGroup, group_id)]
    )[0]
    context = {"group": group, "values": group.model_dump(), "errors": {}, "notice": notice}
    return render(request, "security_group.html", context)


@router.post("/security_groups/{group_id}")
async def edit(request: Request, group_id: str, session: DB, user: User) -> Response:
    form = await form_of(request, user)
    try:
        body = SecurityGroupUpdate(
            name=form.get("name") or None,
            description=form.get("description", ""),
            rules_text=form.get("rules_text", ""),
        )
        security_groups.update_group(session, user.account, group_id, body)
    except (ValidationError, AppError) as error:
        session.rollback()
        group = security_groups.public(
            session, [access.get(session, user.account, SecurityGroup, group_id)]
        )[0]
        context = {"group": group, "values": form, "errors": _errors(error), "notice": ""}
        return render(request, "security_group.html", context, status=400)
    return redirect(f"/security_groups/{group_id}", "saved; running members follow in seconds")


@router.post("/security_groups/{group_id}/delete")
async def delete(request: Request, group_id: str, session: DB, user: User) -> Response:
    await form_of(request, user)
    security_groups.delete_group(session, user.account, group_id)
    return redirect("/security_groups", f"deleted {group_id}")

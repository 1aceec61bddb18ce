"""Volumes: list, create, attach to an instance, detach, delete."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from app.errors import AppError
from app.models.instance import InstanceState
from app.models.volume import VolumeAttach, VolumeCreate, VolumeState
from app.services.compute import instances
from app.services.listing import MAX_LIMIT, PageRequest
from app.services.storage import volumes
from app.web.pages import DB, PageRoute, User, field_errors, form_of, redirect, render

router = APIRouter(route_class=PageRoute, include_in_schema=False)
CREATE_FIELDS = ("size_mib", "display_name", "instance_id")


def _page(request: Request, session: DB, user: User, **extra: object) -> Response:
    page = PageRequest(limit=MAX_LIMIT, sort="-created_at")
    rows, _ = volumes.list_volumes(session, user.account, page)
    candidates, _ = instances.list_instances(session, user.account, PageRequest(limit=MAX_LIMIT))
    live = [i for i in candidates if i.state in (InstanceState.running, InstanceState.stopped)]
    context = {
        "volumes": [v for v in rows if v.state != VolumeState.deleted],
        "instances": live,
        "values": {},
        "errors": {},
        "notice": "",
        **extra,
    }
    status = 400 if extra.get("errors") else 200
    return render(request, "volumes.html", context, status=status)


@router.get("/volumes")
def list_page(request: Request, session: DB, user: User, notice: str = "") -> Response:
    return _page(request, session, user, notice=notice)


@router.post("/volumes")
async def create(request: Request, session: DB, user: User) -> Response:
    form = await form_of(request, user)
    try:
        body = VolumeCreate.model_validate(
            {
                "size_mib": form.get("size_mib", "").strip() or None,
                "display_name": form.get("display_name", ""),
                "instance_id": form.get("instance_id") or None,
            }
        )
        volume = volumes.create_volume(session, request.app.state.settings, user.account, body)
    except (ValidationError, AppError) as error:
        session.rollback()
        errors = field_errors(error, CREATE_FIELDS)
        if "" in errors and "size" in errors[""]:
            errors = {"size_mib": errors[""]}
        return _page(request, session, user, values=form, errors=errors)
    return redirect("/volumes", f"creating {volume.id}")


@router.post("/volumes/{volume_id}/attach")
async def attach(request: Request, volume_id: str, session: DB, user: User) -> Response:
    form = await form_of(request, user)
    try:
        body = VolumeAttach(instance_id=form.get("instance_id", ""))
        volumes.attach_volume(session, user.account, volume_id, body)
    except (ValidationError, AppError) as error:
        session.rollback()
        detail = next(iter(field_errors(error, ()).values()))
        return _page(request, session, user, errors={volume_id: detail})
    return redirect("/volumes", f"attaching {volume_id}")


@router.post("/volumes/{volume_id}/detach")
async def detach(request: Request, volume_id: str, session: DB, user: User) -> Response:
    await form_of(request, user)
    volumes.detach_volume(session, user.account, volume_id)
    return redirect("/volumes", f"detaching {volume_id}")


@router.post("/volumes/{volume_id}/delete")
async def delete(request: Request, volume_id: str, session: DB, user: User) -> Response:
    await form_of(request, user)
    volumes.delete_volume(session, user.account, volume_id)
    return redirect("/volumes", f"deleting {volume_id}")

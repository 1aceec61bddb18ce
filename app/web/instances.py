"""Instances: the list (with live states), launch, details, power actions, eject, save as
an image, console."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from sqlmodel import col, select

from app.config import Settings
from app.errors import AppError, BadRequest
from app.models import Instance, InstanceType
from app.models.image import ImageCapture
from app.models.instance import MAX_USER_DATA, InstanceCreate
from app.models.quota import UNLIMITED
from app.services import access
from app.services.compute import instances
from app.services.identity import account_quotas, keypairs
from app.services.images import capture, images
from app.services.listing import MAX_LIMIT, PageRequest
from app.services.network import networks, security_groups
from app.services.quotas import number_text
from app.services.storage import volumes
from app.web.pages import DB, PageRoute, User, field_errors, form_of, redirect, render

router = APIRouter(route_class=PageRoute, include_in_schema=False)
LAUNCH_FIELDS = (
    "image_id",
    "instance_type",
    "network_id",
    "hostname",
    "display_name",
    "ssh_key_id",
    "security_group_ids",
    "user_data",
    "metadata_drive",
    "root_disk_size",
)
# The launch form's metadata drive choice: "" leaves it to the image.
DRIVE_CHOICES = {"": None, "yes": True, "no": False}
ACTIONS = ("start", "stop", "reboot", "poweroff")
PAGE_SIZE = 100  # instances on a page of the list
QUOTA_LABELS = {
    "instances": "Instances",
    "cores": "Cores",
    "memory_mib": "Memory (MiB)",
    "volume_gib": "Volumes (GiB)",
    "images": "Images",
    "image_gib": "Images (GiB)",
    "security_groups": "Security groups",
    "key_pairs": "Key pairs",
}


@router.get("/instances")
def list_page(
    request: Request,
    session: DB,
    user: User,
    notice: str = "",
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> Response:
    """The newest instances first, a page at a time."""
    rows, total = instances.list_instances(session, user.account, _page(offset))
    shown = instances.public(session, rows)
    quota = _quota(session, request.app.state.settings, user)
    context = {
        "instances": shown,
        "notice": notice,
        "quota": quota,
        "offset": offset,
        "total": total,
        "previous": max(offset - PAGE_SIZE, 0) if offset else None,
        "next": offset + PAGE_SIZE if offset + PAGE_SIZE < total else None,
    }
    return render(request, "instances.html", context)


def _page(offset: int) -> PageRequest:
    return PageRequest(limit=PAGE_SIZE, offset=offset, sort="-created_at")


def _quota(session: DB, settings: Settings, user: User) -> list[dict[str, object]]:
    """The signed-in account's quota as the list page shows it (nothing for the system
    account, which has none)."""
    shown = account_quotas.show(session, settings, user.account)
    if shown.exempt:
        return []
    rows = []
    for name, label in QUOTA_LABELS.items():
        item = getattr(shown, name)
        unlimited = item.limit == UNLIMITED
        rows.append(
            {
                "label": label,
                "used": number_text(item.used),
                "limit": "unlimited" if unlimited else item.limit,
                "full": not unlimited and item.used >= item.limit,
            }
        )
    return rows


@router.get("/instances/states")
def states(
    session: DB,
    user: User,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
    instance_id: Annotated[str | None, Query(alias="id", max_length=32)] = None,
) -> JSONResponse:
    """What the list page (its page, by offset) and an instance's page (by id) poll to
    show state changes as they happen."""
    if instance_id is not None:
        rows, _ = instances.list_instances(session, user.account, _page(0), id=instance_id)
    else:
        rows, _ = instances.list_instances(session, user.account, _page(offset))
    return JSONResponse(
        {
            row.id: {"state": row.state, "ip": row.ip_address or "", "reason": row.state_reason}
            for row in instances.public(session, rows)
        },
        headers={"Cache-Control": "no-store"},
    )


def _launch_choices(session: DB, user: User) -> dict[str, object]:
    account = user.account
    page = PageRequest(limit=MAX_LIMIT)
    return {
        "images": images.list_images(session, account, page)[0],
        "types": list(session.exec(select(InstanceType).order_by(col(InstanceType.memory_size)))),
        "networks": networks.list_networks(session, account, page)[0],
        # An instance takes its own account's key pair and groups (admins see everyone's).
        "keypairs": keypairs.list_keypairs(session, account, page, account_id=account.id)[0],
        "groups": security_groups.list_groups(session, account, page, account_id=account.id)[0],
        "max_user_data": MAX_USER_DATA,
    }


@router.get("/instances/new")
def launch_form(request: Request, session: DB, user: User) -> Response:
    choices = _launch_choices(session, user)
    session.commit()  # the default security group, on an account's first look
    default = next((g.id for g in choices["groups"] if g.name == "default"), None)  # type: ignore[attr-defined]
    values = {"security_group_ids": [default] if default else []}
    return render(request, "launch.html", {**choices, "values": values, "errors": {}})


@router.post("/instances/new")
async def launch(request: Request, session: DB, user: User) -> Response:
    form = await request.form()
    await form_of(request, user)  # CSRF
    values = {field: str(form.get(field, "")) for field in LAUNCH_FIELDS}
    group_ids = [str(v) for v in form.getlist("security_group_ids")]
    settings = request.app.state.settings
    try:
        body = InstanceCreate(
            image_id=values["image_id"],
            instance_type=values["instance_type"] or None,
            network_id=values["network_id"] or None,
            hostname=values["hostname"] or None,
            display_name=values["display_name"],
            ssh_key_id=values["ssh_key_id"] or None,
            security_group_ids=group_ids,
            # Browsers send textarea line ends as CRLF: the guest gets what was typed.
            user_data=values["user_data"].replace("\r\n", "\n") or None,
            metadata_drive=_drive_choice(values["metadata_drive"]),
            root_disk_size=_gib(values["root_disk_size"]),
        )
        if not values["image_id"]:
            raise BadRequest("choose an image")
        instance = instances.launch(session, settings, user.account, body)
    except (ValidationError, AppError) as error:
        session.rollback()
        errors = field_errors(error, LAUNCH_FIELDS)
        context = {
            **_launch_choices(session, user),
            "values": {**values, "security_group_ids": group_ids},
            "errors": errors,
        }
        return render(request, "launch.html", context, status=_status(error))
    return redirect(f"/instances/{instance.id}", f"launching {instance.id}")


@router.get("/instances/{instance_id}")
def detail(
    request: Request, instance_id: str, session: DB, user: User, notice: str = ""
) -> Response:
    instance = instances.public(
        session, [access.get(session, user.account, Instance, instance_id)]
    )[0]
    disks = volumes.volumes_of_instance(session, user.account, instance_id)
    return render(
        request, "instance.html", {"instance": instance, "disks": disks, "notice": notice}
    )


@router.post("/instances/{instance_id}/action")
async def action(request: Request, instance_id: str, session: DB, user: User) -> Response:
    form = await form_of(request, user)
    wanted = form.get("action", "")
    if wanted == "terminate":
        instances.terminate(session, user.account, instance_id)
    elif wanted == "eject":
        instances.eject(session, user.account, instance_id)
    elif wanted in ACTIONS:
        instances.request_action(session, user.account, instance_id, wanted)
    else:
        raise BadRequest(f"unknown action {wanted!r}")
    return redirect(f"/instances/{instance_id}", f"{wanted} requested")


@router.post("/instances/{instance_id}/image")
async def save_as_image(request: Request, instance_id: str, session: DB, user: User) -> Response:
    """The instance page's "Save as image" form: a capture, followed on the images page."""
    form = await form_of(request, user)
    body = ImageCapture(
        display_name=form.get("display_name", "")[:255],
        description=form.get("description", "")[:1024],
        is_public=form.get("is_public") == "on",
        prepare=form.get("prepare") == "on",
    )
    settings = request.app.state.settings
    image = capture.request_capture(session, settings, user.account, instance_id, body)
    return redirect("/images", f"capturing {instance_id} as {image.id}")


@router.get("/instances/{instance_id}/console")
def console(request: Request, instance_id: str, session: DB, user: User) -> Response:
    instance = access.get(session, user.account, Instance, instance_id)
    output = instances.console_output(session, request.app.state.settings, instance)
    return render(request, "console.html", {"instance": instance, "console": output})


def _drive_choice(value: str) -> bool | None:
    if value not in DRIVE_CHOICES:
        raise BadRequest(f"metadata drive: {value!r} is not a choice (yes, no, or the image's)")
    return DRIVE_CHOICES[value]


def _gib(text: str) -> int | None:
    """The launch form's root disk size: empty (the type's), or whole GiB."""
    if not text.strip():
        return None
    if not text.strip().isdigit():
        raise BadRequest("root_disk_size: give a whole number of GiB")
    return int(text)


def _status(error: Exception) -> int:
    return error.status_code if isinstance(error, AppError) else 422

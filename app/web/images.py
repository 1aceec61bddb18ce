"""Images: list, upload (with a progress bar), edit, delete."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from app.config import KNOWN_ARCHES
from app.errors import AppError
from app.models import Image
from app.models.image import ImageUpdate
from app.services import access
from app.services.images import images
from app.services.images.images import ImageSpec
from app.services.images.uploads import register_upload
from app.services.listing import MAX_LIMIT, PageRequest
from app.web.pages import DB, PageRoute, User, check_csrf, field_errors, form_of, redirect, render

router = APIRouter(route_class=PageRoute, include_in_schema=False)
EDIT_FIELDS = ("display_name", "description", "is_public", "metadata_drive")


@router.get("/images")
def list_page(request: Request, session: DB, user: User, notice: str = "") -> Response:
    rows, _ = images.list_images(session, user.account, PageRequest(limit=MAX_LIMIT))
    context = {
        "images": rows,
        "arches": KNOWN_ARCHES,
        "notice": notice,
        "max_size": request.app.state.settings.max_image_size,
    }
    return render(request, "images.html", context)


@router.post("/images/upload")
async def upload(
    request: Request,
    session: DB,
    user: User,
    arch: str = "x86_64",
    display_name: str = "",
    description: str = "",
    is_public: bool = False,
    metadata_drive: bool = False,
) -> Response:
    """The upload form's script sends the file as the raw body (XMLHttpRequest, so the
    page can show progress); the answer is JSON for that script."""
    check_csrf(request, user)
    spec = ImageSpec(
        arch=arch,
        account_id=user.account.id,
        description=description[:1024],
        display_name=display_name[:255],
        is_public=is_public,
        metadata_drive=metadata_drive,
    )
    try:
        images.may_publish(user.account, is_public)
        image = await register_upload(request, session, request.app.state.settings, spec)
    except AppError as error:
        return JSONResponse({"detail": error.detail}, status_code=error.status_code)
    return JSONResponse({"id": image.id, "format": image.format}, status_code=201)


@router.get("/images/{image_id}")
def edit_form(request: Request, image_id: str, session: DB, user: User) -> Response:
    image = access.get(session, user.account, Image, image_id)
    values = {
        "display_name": image.display_name,
        "description": image.description,
        "is_public": image.is_public,
        "metadata_drive": image.metadata_drive,
    }
    return render(request, "image.html", {"image": image, "values": values, "errors": {}})


@router.post("/images/{image_id}")
async def edit(request: Request, image_id: str, session: DB, user: User) -> Response:
    form = await form_of(request, user)
    image = access.get(session, user.account, Image, image_id)
    try:
        changes = ImageUpdate(
            display_name=form.get("display_name", ""),
            description=form.get("description", ""),
            is_public=form.get("is_public") == "on",
            metadata_drive=form.get("metadata_drive") == "on",
        )
        images.update_image(session, user.account, image_id, changes)
    except (ValidationError, AppError) as error:
        session.rollback()
        context = {"image": image, "values": form, "errors": field_errors(error, EDIT_FIELDS)}
        return render(request, "image.html", context, status=400)
    return redirect("/images", f"saved {image_id}")


@router.post("/images/{image_id}/delete")
async def delete(request: Request, image_id: str, session: DB, user: User) -> Response:
    await form_of(request, user)
    images.delete_image(session, request.app.state.settings, user.account, image_id)
    return redirect("/images", f"deleted {image_id}")

"""/api/v1/images: register by upload, list, show, update, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from app.api.deps import CurrentAccount, SessionDep, SettingsDep
from app.api.errors import ErrorBody
from app.api.paging import PageDep
from app.errors import Forbidden
from app.models.common import Page
from app.models.image import Image, ImageKind, ImagePublic, ImageState, ImageUpdate
from app.models.image_copy import ImageCopyPublic
from app.services import access
from app.services.images import images
from app.services.images.images import ImageSpec
from app.services.images.uploads import register_upload
from app.services.storage import image_copies

router = APIRouter(prefix="/images", tags=["images"])

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


def _public(image: Image) -> ImagePublic:
    return ImagePublic.model_validate(image, from_attributes=True)


@router.get("", response_model=Page[ImagePublic])
def list_images(
    session: SessionDep,
    account: CurrentAccount,
    page: PageDep,
    arch: Annotated[str | None, Query(max_length=16)] = None,
    format: Annotated[str | None, Query(max_length=16)] = None,
    is_public: bool | None = None,
    account_id: Annotated[str | None, Query(max_length=32)] = None,
    kind: Annotated[ImageKind | None, Query(description="disk, or iso: installer CDs")] = None,
    state: ImageState | None = None,
) -> Page[ImagePublic]:
    """Your images and every public image (an admin sees all)."""
    rows, total = images.list_images(
        session,
        account,
        page,
        arch=arch,
        format=format,
        is_public=is_public,
        account_id=account_id,
        kind=kind,
        state=state,
    )
    return Page(items=[_public(r) for r in rows], total=total, limit=page.limit, offset=page.offset)


@router.post(
    "",
    response_model=ImagePublic,
    status_code=status.HTTP_201_CREATED,
    openapi_extra=UPLOAD_BODY,
    responses={
        413: {"description": "Larger than VDC_MAX_IMAGE_SIZE"},
        415: {"description": "Body not application/octet-stream"},
        507: {"model": ErrorBody, "description": "Not enough space in the image store"},
    },
)
async def upload_image(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    account: CurrentAccount,
    arch: Annotated[str, Query(max_length=16, description="x86_64, x86, i686 or aarch64")],
    description: Annotated[str, Query(max_length=1024)] = "",
    display_name: Annotated[str, Query(max_length=255)] = "",
    is_public: bool = False,
    convert: Annotated[str | None, Query(description="Convert to qcow2 or raw on register")] = None,
    metadata_drive: Annotated[
        bool, Query(description="Its instances get the metadata drive (LABEL=METADATA)")
    ] = False,
    account_id: Annotated[
        str | None, Query(max_length=32, description="Owner (admins only); default: you")
    ] = None,
) -> ImagePublic:
    """Registers the request body (the raw image file) as a new image: a disk image, or an
    installer ISO (kind `iso`, launched with a blank `root_disk_size` GiB disk).

    `curl -X POST -T disk.qcow2 -H 'Content-Type: application/octet-stream' URL?arch=x86_64`
    (a POST: `curl -T` alone sends a PUT).
    """
    if account_id not in (None, account.id) and not account.is_admin:
        raise Forbidden("only an admin may register an image for another account")
    images.may_publish(account, is_public)
    spec = ImageSpec(
        arch=arch,
        account_id=account_id or account.id,
        description=description,
        display_name=display_name,
        is_public=is_public,
        convert_to=convert,
        metadata_drive=metadata_drive,
    )
    image = await register_upload(request, session, settings, spec)
    return _public(image)


@router.get("/{image_id}", response_model=ImagePublic)
def show_image(image_id: str, session: SessionDep, account: CurrentAccount) -> ImagePublic:
    """One image; for an admin, also the hosts holding a copy (`copies`)."""
    shown = _public(access.get(session, account, Image, image_id))
    if account.is_admin:
        shown.copies = [
            ImageCopyPublic.model_validate(copy, from_attributes=True)
            for copy in image_copies.copies_of(session, image_id)
        ]
    return shown


@router.patch("/{image_id}", response_model=ImagePublic)
def update_image(
    image_id: str, body: ImageUpdate, session: SessionDep, account: CurrentAccount
) -> ImagePublic:
    """Changes the display name, description, public flag or metadata drive default of one
    of your images."""
    return _public(images.update_image(session, account, image_id, body))


@router.delete("/{image_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_image(
    image_id: str, session: SessionDep, settings: SettingsDep, account: CurrentAccount
) -> None:
    images.delete_image(session, settings, account, image_id)

"""/api/v1/volumes: create, list, show, rename, attach, detach, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from app.api.deps import CurrentAccount, SessionDep, SettingsDep
from app.api.paging import PageDep
from app.models import Volume
from app.models.common import Page
from app.models.volume import (
    VolumeAttach,
    VolumeCreate,
    VolumePublic,
    VolumeState,
    VolumeUpdate,
)
from app.services import access
from app.services.storage import volumes

router = APIRouter(prefix="/volumes", tags=["volumes"])


@router.post("", response_model=VolumePublic, status_code=status.HTTP_202_ACCEPTED)
def create_volume(
    body: VolumeCreate, session: SessionDep, settings: SettingsDep, account: CurrentAccount
) -> VolumePublic:
    """A blank volume (`size_mib` or `size_gib`) or a copy-on-write one from an image
    (`image_id`). It answers at once in `creating`; it is `available` when made. Give
    `instance_id` to make it on that instance's host: a volume attaches only there."""
    return VolumePublic.of(volumes.create_volume(session, settings, account, body))


@router.get("", response_model=Page[VolumePublic])
def list_volumes(
    session: SessionDep,
    account: CurrentAccount,
    page: PageDep,
    state: VolumeState | None = None,
    instance_id: Annotated[str | None, Query(max_length=32)] = None,
    host_node_id: Annotated[str | None, Query(max_length=32)] = None,
    account_id: Annotated[str | None, Query(max_length=32, description="Admins only")] = None,
) -> Page[VolumePublic]:
    rows, total = volumes.list_volumes(
        session,
        account,
        page,
        state=state,
        instance_id=instance_id,
        host_node_id=host_node_id,
        account_id=account_id,
    )
    return Page(
        items=[VolumePublic.of(r) for r in rows], total=total, limit=page.limit, offset=page.offset
    )


@router.get("/{volume_id}", response_model=VolumePublic)
def show_volume(volume_id: str, session: SessionDep, account: CurrentAccount) -> VolumePublic:
    return VolumePublic.of(access.get(session, account, Volume, volume_id))


@router.patch("/{volume_id}", response_model=VolumePublic)
def update_volume(
    volume_id: str, body: VolumeUpdate, session: SessionDep, account: CurrentAccount
) -> VolumePublic:
    return VolumePublic.of(volumes.update_volume(session, account, volume_id, body))


@router.delete("/{volume_id}", response_model=VolumePublic, status_code=status.HTTP_202_ACCEPTED)
def delete_volume(volume_id: str, session: SessionDep, account: CurrentAccount) -> VolumePublic:
    """Deletes an available volume (an attached one must be detached first)."""
    return VolumePublic.of(volumes.delete_volume(session, account, volume_id))


@router.post(
    "/{volume_id}/attach", response_model=VolumePublic, status_code=status.HTTP_202_ACCEPTED
)
def attach_volume(
    volume_id: str, body: VolumeAttach, session: SessionDep, account: CurrentAccount
) -> VolumePublic:
    """Attaches to a running instance live (ACPI PCI hotplug) and persistently, or to a
    stopped one for its next boot. The guest finds it as
    `/dev/disk/by-id/virtio-<volume id>`, whatever the device name."""
    return VolumePublic.of(volumes.attach_volume(session, account, volume_id, body))


@router.post(
    "/{volume_id}/detach", response_model=VolumePublic, status_code=status.HTTP_202_ACCEPTED
)
def detach_volume(volume_id: str, session: SessionDep, account: CurrentAccount) -> VolumePublic:
    """Detaches; a running guest must release the disk within VDC_DETACH_TIMEOUT seconds,
    or the volume goes to `error` (still attached) with the reason."""
    return VolumePublic.of(volumes.detach_volume(session, account, volume_id))

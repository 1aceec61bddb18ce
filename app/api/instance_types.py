"""/api/v1/instance_types: everyone lists them; admins create, change and delete."""

from __future__ import annotations

from fastapi import APIRouter, status

from app.api.deps import AdminAccount, CurrentAccount, SessionDep
from app.models.common import Page
from app.models.instance_type import InstanceTypeCreate, InstanceTypePublic, InstanceTypeUpdate
from app.services.compute import instance_types

router = APIRouter(prefix="/instance_types", tags=["instance types"])


def _public(row: object) -> InstanceTypePublic:
    return InstanceTypePublic.model_validate(row, from_attributes=True)


@router.get("", response_model=Page[InstanceTypePublic])
def list_types(session: SessionDep, _account: CurrentAccount) -> Page[InstanceTypePublic]:
    rows = instance_types.list_types(session)
    return Page(items=[_public(r) for r in rows], total=len(rows), limit=len(rows), offset=0)


@router.post("", response_model=InstanceTypePublic, status_code=201)
def create_type(
    body: InstanceTypeCreate, session: SessionDep, _admin: AdminAccount
) -> InstanceTypePublic:
    return _public(instance_types.create_type(session, body))


@router.get("/{name}", response_model=InstanceTypePublic)
def show_type(name: str, session: SessionDep, _account: CurrentAccount) -> InstanceTypePublic:
    return _public(instance_types.get_type(session, name))


@router.patch("/{name}", response_model=InstanceTypePublic)
def update_type(
    name: str, body: InstanceTypeUpdate, session: SessionDep, _admin: AdminAccount
) -> InstanceTypePublic:
    return _public(instance_types.update_type(session, name, body))


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_type(name: str, session: SessionDep, _admin: AdminAccount) -> None:
    instance_types.delete_type(session, name)

"""/api/v1/security_groups: groups of inbound rules for instances (anti-spoofing always on)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from app.api.deps import CurrentAccount, SessionDep, SettingsDep
from app.api.paging import PageDep
from app.models.common import Page
from app.models.security_group import (
    SecurityGroup,
    SecurityGroupCreate,
    SecurityGroupPublic,
    SecurityGroupUpdate,
)
from app.services import access
from app.services.network import security_groups

router = APIRouter(prefix="/security_groups", tags=["security groups"])


def _one(session: SessionDep, group: SecurityGroup) -> SecurityGroupPublic:
    return security_groups.public(session, [group])[0]


@router.get("", response_model=Page[SecurityGroupPublic])
def list_groups(
    session: SessionDep,
    account: CurrentAccount,
    page: PageDep,
    name: Annotated[str | None, Query(max_length=255)] = None,
    account_id: Annotated[str | None, Query(max_length=32, description="Admins only")] = None,
) -> Page[SecurityGroupPublic]:
    """Your groups, `default` among them (an admin sees all)."""
    rows, total = security_groups.list_groups(
        session, account, page, name=name, account_id=account_id
    )
    session.commit()  # the default group, when this was the account's first look
    return Page(
        items=security_groups.public(session, rows),
        total=total,
        limit=page.limit,
        offset=page.offset,
    )


@router.post("", response_model=SecurityGroupPublic, status_code=status.HTTP_201_CREATED)
def create_group(
    body: SecurityGroupCreate, session: SessionDep, settings: SettingsDep, account: CurrentAccount
) -> SecurityGroupPublic:
    """Rules as objects (`rules`) or in Wakame-vdc's text form (`rules_text`, one per line:
    `tcp:22,22,ip4:0.0.0.0/0`, `icmp:-1,-1,ip4:0.0.0.0/0`, `any:-1,-1,sg-...`)."""
    return _one(session, security_groups.create_group(session, settings, account, body))


@router.get("/{group_id}", response_model=SecurityGroupPublic)
def show_group(group_id: str, session: SessionDep, account: CurrentAccount) -> SecurityGroupPublic:
    return _one(session, access.get(session, account, SecurityGroup, group_id))


@router.patch("/{group_id}", response_model=SecurityGroupPublic)
def update_group(
    group_id: str, body: SecurityGroupUpdate, session: SessionDep, account: CurrentAccount
) -> SecurityGroupPublic:
    """Renames, or replaces the rules: running members get the new rules within seconds,
    without a restart."""
    return _one(session, security_groups.update_group(session, account, group_id, body))


@router.delete("/{group_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_group(group_id: str, session: SessionDep, account: CurrentAccount) -> None:
    """Refused for `default`, for a group with live members, and for the source of another
    group's rule."""
    security_groups.delete_group(session, account, group_id)

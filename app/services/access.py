"""Tenancy as a query: which rows of a tenant's resource an account may see, and one by id.

Every read of an account's resource starts from `visible()`, so another account's resource
is simply not found (404, never 403) and no use case can forget the check. Admins see all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy.sql.base import ExecutableOption
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, or_, select
from sqlmodel.sql.expression import SelectOfScalar

from app.errors import NotFound
from app.models import (
    Account,
    ApiKey,
    Image,
    Instance,
    Network,
    SecurityGroup,
    SshKeyPair,
    Volume,
)
from app.services.listing import PageRequest, fetch_page

Owned = TypeVar("Owned", ApiKey, Image, Instance, Network, SecurityGroup, SshKeyPair, Volume)

# What a 404 calls each resource.
NAMES: dict[type[Any], str] = {
    ApiKey: "API key",
    Image: "image",
    Instance: "instance",
    Network: "network",
    SecurityGroup: "security group",
    SshKeyPair: "key pair",
    Volume: "volume",
}


def visible(account: Account, model: type[Owned]) -> SelectOfScalar[Owned]:
    """The rows of `model` the account may see, as a select to refine."""
    statement = select(model)
    if account.is_admin:
        return statement
    return statement.where(_visible_to(account, model))


def _visible_to(account: Account, model: type[Owned]) -> ColumnElement[bool]:
    own = col(model.account_id) == account.id
    if model is Image:
        return or_(own, col(Image.is_public))  # public images are everyone's to launch
    if model is Network:
        return or_(col(Network.account_id).is_(None), own)  # shared networks have no owner
    return own


def get(session: Session, account: Account, model: type[Owned], row_id: str) -> Owned:
    """The row with this id if the account may see it; NotFound otherwise."""
    found = session.exec(visible(account, model).where(col(model.id) == row_id)).first()
    if found is None:
        raise NotFound.resource(NAMES[model], row_id)
    return found


def page(
    session: Session,
    account: Account,
    model: type[Owned],
    request: PageRequest,
    sortable: tuple[str, ...],
    filters: Mapping[str, object] | None = None,
    options: Sequence[ExecutableOption] = (),
) -> tuple[list[Owned], int]:
    """One page of the rows the account may see (see listing.fetch_page)."""
    return fetch_page(session, model, visible(account, model), request, sortable, filters, options)

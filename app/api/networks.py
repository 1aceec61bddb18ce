"""/api/v1/networks: admins create and delete; every account lists the ones it may use."""

from __future__ import annotations

from fastapi import APIRouter, status

from app.api.deps import AdminAccount, CurrentAccount, SessionDep
from app.api.paging import PageDep
from app.models import Network
from app.models.common import Page
from app.models.network import NetworkCreate, NetworkPublic, NetworkUpdate
from app.services import access
from app.services.network import networks

router = APIRouter(prefix="/networks", tags=["networks"])


@router.get("", response_model=Page[NetworkPublic])
def list_networks(
    session: SessionDep, account: CurrentAccount, page: PageDep
) -> Page[NetworkPublic]:
    rows, total = networks.list_networks(session, account, page)
    return Page(
        items=networks.public(session, rows), total=total, limit=page.limit, offset=page.offset
    )


@router.post("", response_model=NetworkPublic, status_code=201)
def create_network(body: NetworkCreate, session: SessionDep, _admin: AdminAccount) -> NetworkPublic:
    """A network with DHCP. Gateway and range default to the first address and the rest."""
    return networks.public(session, [networks.create_network(session, body)])[0]


@router.get("/{network_id}", response_model=NetworkPublic)
def show_network(network_id: str, session: SessionDep, account: CurrentAccount) -> NetworkPublic:
    return networks.public(session, [access.get(session, account, Network, network_id)])[0]


@router.patch("/{network_id}", response_model=NetworkPublic)
def update_network(
    network_id: str, body: NetworkUpdate, session: SessionDep, admin: AdminAccount
) -> NetworkPublic:
    return networks.public(session, [networks.update_network(session, admin, network_id, body)])[0]


@router.delete("/{network_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_network(network_id: str, session: SessionDep, admin: AdminAccount) -> None:
    """Refused (409) while any instance has an address on it."""
    networks.delete_network(session, admin, network_id)

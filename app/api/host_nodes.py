"""/api/v1/host_nodes (admin): the libvirt hosts instances run on."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from app.api.deps import AdminAccount, SessionDep, SettingsDep
from app.api.paging import PageDep
from app.models.common import Page
from app.models.host_node import HostNodeCreate, HostNodePublic, HostNodeUpdate
from app.services import hosts
from app.services.compute import host_probe

router = APIRouter(prefix="/host_nodes", tags=["host nodes"])


@router.get("", response_model=Page[HostNodePublic])
def list_hosts(
    session: SessionDep,
    _admin: AdminAccount,
    page: PageDep,
    status: Annotated[str | None, Query(max_length=16)] = None,
    enabled: bool | None = None,
) -> Page[HostNodePublic]:
    rows, total = hosts.list_hosts(session, page, status=status, enabled=enabled)
    return Page(
        items=hosts.public(session, rows), total=total, limit=page.limit, offset=page.offset
    )


@router.post("", response_model=HostNodePublic, status_code=201)
def add_host(
    body: HostNodeCreate, session: SessionDep, settings: SettingsDep, _admin: AdminAccount
) -> HostNodePublic:
    """Registers a host by libvirt URI; capacity is read from libvirt unless given, and
    whether KVM works there is found by booting a probe guest (`virt_type`)."""
    host = hosts.add_host(session, settings, body)
    if host.status == "online":
        host_probe.probe(session, settings, host)
    return hosts.public(session, [host])[0]


@router.post("/{host_id}/probe", response_model=HostNodePublic)
def probe_host(
    host_id: str, session: SessionDep, settings: SettingsDep, _admin: AdminAccount
) -> HostNodePublic:
    """Boots a probe guest under KVM on the host: `virt_type` becomes `kvm` if it boots,
    `qemu` (software emulation) if not, with the reason in `virt_type_reason`."""
    host = host_probe.probe(session, settings, hosts.get_host(session, host_id))
    return hosts.public(session, [host])[0]


@router.get("/{host_id}", response_model=HostNodePublic)
def show_host(host_id: str, session: SessionDep, _admin: AdminAccount) -> HostNodePublic:
    return hosts.public(session, [hosts.get_host(session, host_id)])[0]


@router.patch("/{host_id}", response_model=HostNodePublic)
def update_host(
    host_id: str, body: HostNodeUpdate, session: SessionDep, _admin: AdminAccount
) -> HostNodePublic:
    """Enables or disables a host (disabled: no new instances), corrects its capacity, or
    sets its tunnel address (`tunnel_ip`)."""
    return hosts.public(session, [hosts.update_host(session, host_id, body)])[0]


@router.delete("/{host_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_host(host_id: str, session: SessionDep, _admin: AdminAccount) -> None:
    hosts.delete_host(session, host_id)

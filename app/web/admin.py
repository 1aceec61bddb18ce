"""For admins: host nodes and networks."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from app.config import Settings
from app.errors import AppError
from app.models import HostNode
from app.models.host_node import HostNodeCreate
from app.models.network import NetworkCreate
from app.services import hosts
from app.services.compute import host_probe
from app.services.listing import MAX_LIMIT, PageRequest
from app.services.network import networks
from app.web.pages import DB, Admin, PageRoute, field_errors, form_of, redirect, render

router = APIRouter(route_class=PageRoute, include_in_schema=False)
HOST_FIELDS = ("name", "uri", "tunnel_ip")
NETWORK_FIELDS = ("name", "cidr", "dns_servers", "domain")


def _hosts_page(request: Request, session: DB, **extra: object) -> Response:
    rows, _ = hosts.list_hosts(session, PageRequest(limit=MAX_LIMIT))
    context: dict[str, object] = {
        "hosts": hosts.public(session, rows),
        "values": {},
        "errors": {},
        "notice": "",
    }
    context.update(extra)
    return render(request, "hosts.html", context, status=400 if extra.get("errors") else 200)


@router.get("/hosts")
def hosts_page(request: Request, session: DB, user: Admin, notice: str = "") -> Response:
    return _hosts_page(request, session, notice=notice)


@router.post("/hosts")
async def add_host(request: Request, session: DB, user: Admin) -> Response:
    form = await form_of(request, user)
    try:
        body = HostNodeCreate(
            name=form.get("name", ""),
            uri=form.get("uri", ""),
            tunnel_ip=form.get("tunnel_ip") or None,
        )
        host = await run_in_threadpool(_add_and_probe, session, request.app.state.settings, body)
    except (ValidationError, AppError) as error:
        session.rollback()
        return _hosts_page(request, session, values=form, errors=field_errors(error, HOST_FIELDS))
    return redirect("/hosts", f"added {host.id}")


def _add_and_probe(session: Session, settings: Settings, body: HostNodeCreate) -> HostNode:
    """Asks libvirt for the host's capacity, then boots the KVM probe guest there."""
    host = hosts.add_host(session, settings, body)
    if host.status == "online":
        host_probe.probe(session, settings, host)
    return host


def _networks_page(request: Request, session: DB, user: Admin, **extra: object) -> Response:
    rows, _ = networks.list_networks(session, user.account, PageRequest(limit=MAX_LIMIT))
    context: dict[str, object] = {"networks": rows, "values": {}, "errors": {}, "notice": ""}
    context.update(extra)
    return render(request, "networks.html", context, status=400 if extra.get("errors") else 200)


@router.get("/networks")
def networks_page(request: Request, session: DB, user: Admin, notice: str = "") -> Response:
    return _networks_page(request, session, user, notice=notice)


@router.post("/networks")
async def add_network(request: Request, session: DB, user: Admin) -> Response:
    form = await form_of(request, user)
    try:
        body = NetworkCreate(
            name=form.get("name", ""),
            cidr=form.get("cidr", ""),
            dns_servers=[s.strip() for s in form.get("dns_servers", "").split(",") if s.strip()],
            domain=form.get("domain", ""),
            is_default=form.get("is_default") == "on",
        )
        network = networks.create_network(session, body)
    except (ValidationError, AppError) as error:
        session.rollback()
        errors = field_errors(error, NETWORK_FIELDS)
        return _networks_page(request, session, user, values=form, errors=errors)
    return redirect("/networks", f"added {network.id}")

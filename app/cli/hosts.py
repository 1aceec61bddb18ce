"""`vdc-manage host ...`: the libvirt hosts instances run on.

vdc-manage host add node1 --uri qemu:///system
vdc-manage host disable node1
"""

from __future__ import annotations

import typer

from app.cli.common import database, print_record, print_table, reports_errors
from app.config import Settings
from app.models.host_node import HostNodeCreate, HostNodeUpdate
from app.services import hosts
from app.services.listing import MAX_LIMIT, PageRequest

host_cli = typer.Typer(help="Host nodes (libvirt hosts).", no_args_is_help=True)

HOST_COLUMNS = [
    "id",
    "name",
    "uri",
    "status",
    "enabled",
    "cpu_cores",
    "cpu_cores_used",
    "memory_size",
    "memory_size_used",
]


@host_cli.command("add")
@reports_errors
def host_add(
    name: str,
    uri: str | None = typer.Option(None, "--uri", help="libvirt URI; default: VDC_LIBVIRT_URI"),
    cpu_cores: int | None = typer.Option(None, "--cpu-cores", help="Default: read from libvirt"),
    memory_size: int | None = typer.Option(
        None, "--memory-size", help="MiB; default: from libvirt"
    ),
) -> None:
    """Registers a libvirt host and prints its id (hn-...)."""
    settings = Settings()
    body = HostNodeCreate(
        name=name, uri=uri or settings.libvirt_uri, cpu_cores=cpu_cores, memory_size=memory_size
    )
    with database(settings) as session:
        host = hosts.add_host(session, settings, body)
    typer.echo(host.id)


@host_cli.command("list")
@reports_errors
def host_list() -> None:
    with database(Settings()) as session:
        rows, _ = hosts.list_hosts(session, PageRequest(limit=MAX_LIMIT))
        print_table([h.model_dump() for h in hosts.public(session, rows)], HOST_COLUMNS)


@host_cli.command("show")
@reports_errors
def host_show(host_id: str) -> None:
    with database(Settings()) as session:
        print_record(hosts.public(session, [hosts.get_host(session, host_id)])[0].model_dump())


def _set_enabled(host_id: str, enabled: bool) -> None:
    with database(Settings()) as session:
        hosts.update_host(session, host_id, HostNodeUpdate(enabled=enabled))
    typer.echo(f"{'enabled' if enabled else 'disabled'} {host_id}")


@host_cli.command("disable")
@reports_errors
def host_disable(host_id: str) -> None:
    """No new instances are placed on a disabled host; running ones stay."""
    _set_enabled(host_id, False)


@host_cli.command("enable")
@reports_errors
def host_enable(host_id: str) -> None:
    _set_enabled(host_id, True)


@host_cli.command("del")
@reports_errors
def host_del(host_id: str) -> None:
    """Removes a host (refused while it has instances)."""
    with database(Settings()) as session:
        hosts.delete_host(session, host_id)
    typer.echo(f"deleted {host_id}")

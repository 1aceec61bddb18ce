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
from app.services.compute import host_probe
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
    "virt_type",
    "tunnel_ip",
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
    tunnel_ip: str | None = typer.Option(
        None, "--tunnel-ip", help="Underlay address for guest traffic; default: the URI's host"
    ),
) -> None:
    """Registers a libvirt host (qemu:///system, or qemu+ssh://root@HOST/system) and prints
    its id (hn-...). It boots a probe guest there to find whether KVM works (virt type)."""
    settings = Settings()
    body = HostNodeCreate(
        name=name,
        uri=uri or settings.libvirt_uri,
        cpu_cores=cpu_cores,
        memory_size=memory_size,
        tunnel_ip=tunnel_ip,
    )
    with database(settings) as session:
        host = hosts.add_host(session, settings, body)
        if host.status == "online":
            host_probe.probe(session, settings, host)
        typer.secho(f"virt type: {host.virt_type or '?'} ({host.virt_type_reason})", err=True)
    typer.echo(host.id)


@host_cli.command("probe")
@reports_errors
def host_probe_command(host_id: str) -> None:
    """Boots a probe guest under KVM on the host: records kvm if it boots, else qemu."""
    settings = Settings()
    with database(settings) as session:
        host = host_probe.probe(session, settings, hosts.get_host(session, host_id))
        typer.echo(f"{host.name}: {host.virt_type} ({host.virt_type_reason})")


@host_cli.command("update")
@reports_errors
def host_update(
    host_id: str,
    tunnel_ip: str | None = typer.Option(
        None, "--tunnel-ip", help="Underlay address for guest traffic between hosts"
    ),
) -> None:
    """Changes a host's tunnel address."""
    with database(Settings()) as session:
        hosts.update_host(session, host_id, HostNodeUpdate(tunnel_ip=tunnel_ip))
    typer.echo(f"updated {host_id}")


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

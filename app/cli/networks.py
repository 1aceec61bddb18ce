"""`vdc-manage network ...`: networks with DHCP.

vdc-manage network add e2e --cidr 10.0.0.0/24 --dns 10.0.0.1 --default
"""

from __future__ import annotations

import typer

from app.cli.common import OPERATOR, database, print_table, reports_errors
from app.config import Settings
from app.models.network import NetworkCreate
from app.services.listing import MAX_LIMIT, PageRequest
from app.services.network import networks

network_cli = typer.Typer(help="Networks with DHCP.", no_args_is_help=True)


@network_cli.command("add")
@reports_errors
def network_add(
    name: str,
    cidr: str = typer.Option(..., "--cidr", help="e.g. 10.0.0.0/24"),
    gateway: str | None = typer.Option(None, "--gateway", help="Default: the first address"),
    dhcp_start: str | None = typer.Option(None, "--dhcp-start"),
    dhcp_end: str | None = typer.Option(None, "--dhcp-end"),
    dns: list[str] = typer.Option([], "--dns", help="A DNS server; repeat for more"),
    domain: str = typer.Option("", "--domain"),
    default: bool = typer.Option(False, "--default", help="Used by launches that name no network"),
    account_id: str | None = typer.Option(None, "--account-id", help="Private to this account"),
) -> None:
    """Creates a network and prints its id (nw-...)."""
    body = NetworkCreate(
        name=name,
        cidr=cidr,
        gateway=gateway,
        dhcp_start=dhcp_start,
        dhcp_end=dhcp_end,
        dns_servers=dns,
        domain=domain,
        is_default=default,
        account_id=account_id,
    )
    with database(Settings()) as session:
        network = networks.create_network(session, body)
    typer.echo(network.id)


@network_cli.command("list")
@reports_errors
def network_list() -> None:
    with database(Settings()) as session:
        rows, _ = networks.list_networks(session, OPERATOR, PageRequest(limit=MAX_LIMIT))
        table = [n.model_dump() for n in networks.public(session, rows)]
    print_table(
        table,
        [
            "id",
            "name",
            "cidr",
            "gateway",
            "dhcp_start",
            "dhcp_end",
            "is_default",
            "addresses_in_use",
        ],
    )


@network_cli.command("del")
@reports_errors
def network_del(network_id: str) -> None:
    """Deletes a network no instance uses, and its libvirt networks on the hosts."""
    with database(Settings()) as session:
        unreachable = networks.delete_network(session, OPERATOR, network_id)
    typer.echo(f"deleted {network_id}")
    for host in unreachable:
        typer.secho(f"host {host} did not answer: remove vdc-{network_id} there by hand", err=True)

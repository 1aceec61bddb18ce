"""`vdc-manage`: the operator's admin CLI, working on the database directly (as Wakame-vdc's).

vdc-manage account add NAME [--admin]
vdc-manage image add local PATH --arch x86_64 --account-id a-shpoolxx --description "..."
vdc-manage image prepare PATH --install-init --convert qcow2 --register --arch x86_64
vdc-manage guest-script > vdc-init
vdc-manage volume create --account-id a-xxxxxxxx --size 64M --instance-id i-xxxxxxxx --wait
vdc-manage securitygroup create web --account-id a-xxxxxxxx --rule tcp:22,22,ip4:0.0.0.0/0
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from app.cli.common import database, reports_errors, run_cli
from app.cli.doctor import doctor_command
from app.cli.image_prepare import guest_script_command, image_prepare_command
from app.cli.keypairs import keypair_cli
from app.cli.progress import copy_progress
from app.cli.security_groups import securitygroup_cli
from app.cli.volumes import volume_cli
from app.config import KNOWN_ARCHES, Settings
from app.ids import SHARED_ACCOUNT_ID
from app.models import Account
from app.models.host_node import HostNodeCreate, HostNodeUpdate
from app.models.image import ImagePublic, ImageUpdate
from app.models.instance import InstanceState
from app.models.network import NetworkCreate
from app.services import accounts, hosts, images, instances, networks
from app.services.images import ImageSpec
from app.services.listing import MAX_LIMIT, PageRequest

cli = typer.Typer(
    help="vdc admin CLI (works on the database directly).",
    no_args_is_help=True,
    add_completion=False,
)
account_cli = typer.Typer(help="Accounts and their API keys.", no_args_is_help=True)
image_cli = typer.Typer(help="Machine images.", no_args_is_help=True)
image_add_cli = typer.Typer(help="Register an image.", no_args_is_help=True)
host_cli = typer.Typer(help="Host nodes (libvirt hosts).", no_args_is_help=True)
network_cli = typer.Typer(help="Networks with DHCP.", no_args_is_help=True)
instance_cli = typer.Typer(help="Instances (operator's view).", no_args_is_help=True)
cli.add_typer(account_cli, name="account")
cli.add_typer(image_cli, name="image")
cli.add_typer(host_cli, name="host")
cli.add_typer(network_cli, name="network")
cli.add_typer(instance_cli, name="instance")
image_cli.add_typer(image_add_cli, name="add")
cli.add_typer(keypair_cli, name="keypair", help="SSH key pairs.")
cli.add_typer(volume_cli, name="volume")
cli.add_typer(securitygroup_cli, name="securitygroup")
image_cli.command("prepare")(image_prepare_command)
cli.command("guest-script")(guest_script_command)
cli.command("doctor")(doctor_command)

# The operator acts with an admin's reach; this account is never stored.
OPERATOR = Account(id="a-operator", name="vdc-manage", is_admin=True)


def _print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    widths = {c: max([len(c)] + [len(str(r.get(c, ""))) for r in rows]) for c in columns}
    typer.echo("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for row in rows:
        typer.echo("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns).rstrip())


def _print_record(record: dict[str, Any]) -> None:
    width = max(len(key) for key in record)
    for key, value in record.items():
        typer.echo(f"{key.ljust(width)}  {value}")


# --- accounts ----------------------------------------------------------------------------


@account_cli.command("add")
@reports_errors
def account_add(
    name: str,
    admin: bool = typer.Option(False, "--admin", help="May use admin-only API routes."),
    description: str = typer.Option("", "--description"),
) -> None:
    """Creates an account and prints its API key (shown only this once)."""
    with database(Settings()) as session:
        account, key = accounts.create_account(
            session, name, is_admin=admin, description=description
        )
    typer.echo(f"account_id: {account.id}")
    typer.echo(f"api_key: {key}")
    typer.secho("The key is shown only once; store it now.", err=True, fg=typer.colors.YELLOW)


@account_cli.command("key")
@reports_errors
def account_key(account_id: str) -> None:
    """Issues another API key for an account (by id or name)."""
    with database(Settings()) as session:
        key = accounts.issue_key(session, accounts.get_account(session, account_id).id)
    typer.echo(f"api_key: {key}")


@account_cli.command("list")
@reports_errors
def account_list() -> None:
    with database(Settings()) as session:
        rows = [a.model_dump() for a in accounts.list_accounts(session)]
    _print_table(rows, ["id", "name", "is_admin", "is_system", "description"])


@account_cli.command("show")
@reports_errors
def account_show(account_id: str) -> None:
    with database(Settings()) as session:
        _print_record(accounts.get_account(session, account_id).model_dump())


@account_cli.command("del")
@reports_errors
def account_del(account_id: str) -> None:
    """Deletes an account with its API keys and key pairs (refused while it owns images
    or instances)."""
    with database(Settings()) as session:
        accounts.delete_account(session, account_id)
    typer.echo(f"deleted {account_id}")


# --- images ------------------------------------------------------------------------------


@image_add_cli.command("local")
@reports_errors
def image_add_local(
    path: Path = typer.Argument(..., help="Image file inside an import directory."),
    arch: str = typer.Option(..., "--arch", help=f"One of: {', '.join(KNOWN_ARCHES)}."),
    account_id: str = typer.Option(SHARED_ACCOUNT_ID, "--account-id", help="Owner account."),
    description: str = typer.Option("", "--description"),
    display_name: str = typer.Option("", "--display-name"),
    is_public: bool = typer.Option(False, "--is-public", help="Visible to every account."),
    convert: str | None = typer.Option(None, "--convert", help="Store as qcow2 (or raw)."),
) -> None:
    """Copies a local image file into vdc's store and prints its new id (wmi-...)."""
    settings = Settings()
    spec = ImageSpec(
        arch=arch,
        account_id=account_id,
        description=description,
        display_name=display_name,
        is_public=is_public,
        convert_to=convert,
    )
    with database(settings) as session, copy_progress() as progress:
        image = images.register_local(session, settings, path.absolute(), spec, progress)
    typer.echo(image.id)


@image_cli.command("list")
@reports_errors
def image_list(
    account_id: str | None = typer.Option(None, "--account-id", help="Only this account's."),
) -> None:
    with database(Settings()) as session:
        rows, _ = images.list_images(
            session, OPERATOR, PageRequest(limit=MAX_LIMIT), account_id=account_id
        )
        table = [r.model_dump() for r in rows]
    columns = ["id", "account_id", "arch", "format", "virtual_size", "is_public", "display_name"]
    _print_table(table, columns)


@image_cli.command("show")
@reports_errors
def image_show(image_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    with database(Settings()) as session:
        image = images.get_image(session, OPERATOR, image_id)
        public = ImagePublic.model_validate(image, from_attributes=True).model_dump(mode="json")
    if as_json:
        typer.echo(json.dumps(public, indent=2))
    else:
        _print_record(public)


@image_cli.command("update")
@reports_errors
def image_update(
    image_id: str,
    display_name: str | None = typer.Option(None, "--display-name"),
    description: str | None = typer.Option(None, "--description"),
    is_public: bool | None = typer.Option(None, "--public/--private"),
) -> None:
    changes = {
        k: v
        for k, v in {
            "display_name": display_name,
            "description": description,
            "is_public": is_public,
        }.items()
        if v is not None
    }
    with database(Settings()) as session:
        images.update_image(session, OPERATOR, image_id, ImageUpdate(**changes))
    typer.echo(f"updated {image_id}")


@image_cli.command("del")
@reports_errors
def image_del(image_id: str) -> None:
    """Deletes an image and its file."""
    settings = Settings()
    with database(settings) as session:
        images.delete_image(session, settings, OPERATOR, image_id)
    typer.echo(f"deleted {image_id}")


# --- hosts -------------------------------------------------------------------------------

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
        host = hosts.add_host(session, body)
    typer.echo(host.id)


@host_cli.command("list")
@reports_errors
def host_list() -> None:
    with database(Settings()) as session:
        rows, _ = hosts.list_hosts(session, PageRequest(limit=MAX_LIMIT))
        _print_table([h.model_dump() for h in hosts.public(session, rows)], HOST_COLUMNS)


@host_cli.command("show")
@reports_errors
def host_show(host_id: str) -> None:
    with database(Settings()) as session:
        _print_record(hosts.public(session, [hosts.get_host(session, host_id)])[0].model_dump())


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


# --- networks ----------------------------------------------------------------------------


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
    _print_table(
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


# --- instances ---------------------------------------------------------------------------


@instance_cli.command("list")
@reports_errors
def instance_list(
    state: str | None = typer.Option(None, "--state"),
    host_id: str | None = typer.Option(None, "--host-id"),
    account_id: str | None = typer.Option(None, "--account-id"),
) -> None:
    with database(Settings()) as session:
        rows, _ = instances.list_instances(
            session,
            OPERATOR,
            PageRequest(limit=MAX_LIMIT),
            state=state,
            host_node_id=host_id,
            account_id=account_id,
        )
        table = [i.model_dump() for i in instances.public(session, rows)]
    _print_table(
        table,
        ["id", "account_id", "state", "host_node_id", "ip_address", "mac_address", "hostname"],
    )


@instance_cli.command("show")
@reports_errors
def instance_show(instance_id: str) -> None:
    with database(Settings()) as session:
        shown = instances.public(session, [instances.get_instance(session, OPERATOR, instance_id)])[
            0
        ]
    _print_record(shown.model_dump(mode="json", exclude={"interfaces"}))


@instance_cli.command("force-state")
@reports_errors
def instance_force_state(
    instance_id: str,
    state: InstanceState = typer.Argument(..., help="The state to record."),
    reason: str = typer.Option("", "--reason"),
) -> None:
    """Records a state without touching the host, and cancels the instance's queued jobs:
    for when the database and reality disagree."""
    with database(Settings()) as session:
        instances.force_state(session, instance_id, state, reason)
    typer.echo(f"{instance_id} is now {state}")


def main() -> None:
    run_cli(cli)


if __name__ == "__main__":
    main()

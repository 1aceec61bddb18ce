"""`vdc-manage instance ...`: instances, from the operator's side.

vdc-manage instance list [--state running] [--host-id hn-xxxxxxxx]
vdc-manage instance force-state i-xxxxxxxx stopped --reason "..."
"""

from __future__ import annotations

import typer

from app.cli.common import OPERATOR, database, print_record, print_table, reports_errors
from app.config import Settings
from app.models import Instance
from app.models.instance import InstanceState
from app.services import access
from app.services.compute import instances
from app.services.listing import MAX_LIMIT, PageRequest

instance_cli = typer.Typer(help="Instances (operator's view).", no_args_is_help=True)


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
    print_table(
        table,
        ["id", "account_id", "state", "host_node_id", "ip_address", "mac_address", "hostname"],
    )


@instance_cli.command("show")
@reports_errors
def instance_show(instance_id: str) -> None:
    with database(Settings()) as session:
        shown = instances.public(session, [access.get(session, OPERATOR, Instance, instance_id)])[0]
    print_record(shown.model_dump(mode="json", exclude={"interfaces"}))


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

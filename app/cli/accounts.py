"""`vdc-manage account ...`: accounts and their API keys.

vdc-manage account add NAME [--admin]
vdc-manage account key a-xxxxxxxx
"""

from __future__ import annotations

import typer

from app.cli.common import OPERATOR, database, print_record, print_table, reports_errors
from app.config import Settings
from app.services.identity import accounts

account_cli = typer.Typer(help="Accounts and their API keys.", no_args_is_help=True)


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
        _, key = accounts.issue_key(session, OPERATOR, account_id=account_id)
    typer.echo(f"api_key: {key}")


@account_cli.command("list")
@reports_errors
def account_list() -> None:
    with database(Settings()) as session:
        rows = [a.model_dump() for a in accounts.list_accounts(session)]
    print_table(rows, ["id", "name", "is_admin", "is_system", "description"])


@account_cli.command("show")
@reports_errors
def account_show(account_id: str) -> None:
    with database(Settings()) as session:
        print_record(accounts.get_account(session, account_id).model_dump())


@account_cli.command("del")
@reports_errors
def account_del(account_id: str) -> None:
    """Deletes an account with its API keys and key pairs (refused while it owns images
    or instances)."""
    with database(Settings()) as session:
        accounts.delete_account(session, account_id)
    typer.echo(f"deleted {account_id}")

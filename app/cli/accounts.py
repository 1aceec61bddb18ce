"""`vdc-manage account ...`: accounts and their API keys.

vdc-manage account add NAME [--admin]
vdc-manage account key a-xxxxxxxx [--name laptop]
vdc-manage account keys a-xxxxxxxx
vdc-manage account revoke-key key-xxxxxxxx
vdc-manage account disable|enable|demote|promote a-xxxxxxxx
"""

from __future__ import annotations

import typer

from app.cli.common import OPERATOR, database, print_record, print_table, reports_errors
from app.config import Settings
from app.models import Account
from app.models.account import AccountUpdate
from app.services.identity import accounts, api_keys
from app.services.listing import MAX_LIMIT, PageRequest

account_cli = typer.Typer(help="Accounts and their API keys.", no_args_is_help=True)


def _row(account: Account) -> dict[str, object]:
    return {**account.model_dump(), "disabled": account.disabled}


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
def account_key(
    account_id: str,
    name: str = typer.Option("", "--name", help="A label to tell the keys apart."),
) -> None:
    """Issues another API key for an account (by id or name)."""
    with database(Settings()) as session:
        _, key = accounts.issue_key(session, OPERATOR, name, account_id)
    typer.echo(f"api_key: {key}")


@account_cli.command("keys")
@reports_errors
def account_keys(account_id: str) -> None:
    """Lists an account's API keys by id and prefix (the keys themselves are not kept)."""
    with database(Settings()) as session:
        account = accounts.get_account(session, account_id)
        rows, _ = api_keys.list_keys(
            session, OPERATOR, PageRequest(limit=MAX_LIMIT), account_id=account.id
        )
    print_table(
        [
            {
                **row.model_dump(),
                "state": f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "active",
            }
            for row in rows
        ],
        ["id", "prefix", "name", "created_at", "state"],
    )


@account_cli.command("revoke-key")
@reports_errors
def account_revoke_key(key_id: str) -> None:
    """Revokes an API key at once; the web sessions it opened end with it."""
    with database(Settings()) as session:
        api_keys.revoke(session, OPERATOR, key_id)
    typer.echo(f"revoked {key_id}")


def _change(account_id: str, done: str, **fields: bool) -> None:
    with database(Settings()) as session:
        account = accounts.update_account(session, account_id, AccountUpdate(**fields))
    typer.echo(f"{account.id} ({account.name}) is now {done}")


@account_cli.command("disable")
@reports_errors
def account_disable(account_id: str) -> None:
    """Refuses the account's keys and ends its web sessions at once; its instances keep
    running, and it can change nothing until enabled."""
    _change(account_id, "disabled", disabled=True)


@account_cli.command("enable")
@reports_errors
def account_enable(account_id: str) -> None:
    """Lets a disabled account's keys work again (its ended web sessions stay ended)."""
    _change(account_id, "enabled", disabled=False)


@account_cli.command("promote")
@reports_errors
def account_promote(account_id: str) -> None:
    """Makes the account an admin."""
    _change(account_id, "an admin", is_admin=True)


@account_cli.command("demote")
@reports_errors
def account_demote(account_id: str) -> None:
    """Takes admin rights away (refused for the last enabled admin)."""
    _change(account_id, "a user", is_admin=False)


@account_cli.command("list")
@reports_errors
def account_list() -> None:
    with database(Settings()) as session:
        rows = [_row(a) for a in accounts.list_accounts(session)]
    print_table(rows, ["id", "name", "is_admin", "disabled", "is_system", "description"])


@account_cli.command("show")
@reports_errors
def account_show(account_id: str) -> None:
    with database(Settings()) as session:
        print_record(_row(accounts.get_account(session, account_id)))


@account_cli.command("del")
@reports_errors
def account_del(account_id: str) -> None:
    """Deletes an account with nothing live, with its key pairs and groups (its row stays,
    hidden, while terminated instances or deleted volumes name it). To stop an account
    that still has things, disable it."""
    with database(Settings()) as session:
        accounts.delete_account(session, account_id)
    typer.echo(f"deleted {account_id}")

"""`vdc-manage securitygroup ...`: security groups, from the operator's side.

vdc-manage securitygroup create web --account-id alice --rule tcp:22,22,ip4:0.0.0.0/0
vdc-manage securitygroup update sg-xxxxxxxx --rules-file web.rules
"""

from __future__ import annotations

from pathlib import Path

import typer

from app.cli.common import OPERATOR, database, fail, print_record, print_table, reports_errors
from app.config import Settings
from app.models import SecurityGroup
from app.models.security_group import SecurityGroupCreate, SecurityGroupUpdate
from app.services import access
from app.services.identity.accounts import get_account
from app.services.listing import MAX_LIMIT, PageRequest
from app.services.network import security_groups

securitygroup_cli = typer.Typer(
    help="Security groups (inbound rules; anti-spoofing is always on).", no_args_is_help=True
)

RULE = typer.Option(
    None, "--rule", help="A rule in Wakame-vdc's form, e.g. tcp:22,22,ip4:0.0.0.0/0 (repeat)."
)
RULES_FILE = typer.Option(
    None, "--rules-file", help="A file of rules, one per line ('-' for standard input)."
)


def _rules_text(rules: list[str] | None, rules_file: Path | None) -> str | None:
    if rules and rules_file is not None:
        raise fail("give --rule or --rules-file, not both")
    if rules_file is not None:
        try:
            return (
                typer.get_text_stream("stdin").read()
                if str(rules_file) == "-"
                else (rules_file.read_text())
            )
        except OSError as exc:
            raise fail(f"cannot read {rules_file}: {exc.strerror}") from None
    return "\n".join(rules) + "\n" if rules else None


@securitygroup_cli.command("create")
@reports_errors
def securitygroup_create(
    name: str,
    account_id: str = typer.Option(..., "--account-id", help="Owner account (id or name)."),
    description: str = typer.Option("", "--description"),
    rule: list[str] | None = RULE,
    rules_file: Path | None = RULES_FILE,
) -> None:
    """Creates a group and prints its id (sg-...)."""
    text = _rules_text(rule, rules_file)
    body = SecurityGroupCreate(name=name, description=description, rules_text=text)
    settings = Settings()
    with database(settings) as session:
        owner = get_account(session, account_id)
        group = security_groups.create_group(session, settings, owner, body)
    typer.echo(group.id)


@securitygroup_cli.command("list")
@reports_errors
def securitygroup_list(
    account_id: str | None = typer.Option(None, "--account-id", help="Only this account's."),
) -> None:
    with database(Settings()) as session:
        owner_id = get_account(session, account_id).id if account_id else None
        rows, _ = security_groups.list_groups(
            session, OPERATOR, PageRequest(limit=MAX_LIMIT), account_id=owner_id
        )
        table = [
            {**g.model_dump(), "rules": len(g.rules), "members": len(g.instance_ids)}
            for g in security_groups.public(session, rows)
        ]
    print_table(table, ["id", "account_id", "name", "rules", "members"])


@securitygroup_cli.command("show")
@reports_errors
def securitygroup_show(group_id: str) -> None:
    """A group, its members, and its rules in Wakame-vdc's form."""
    with database(Settings()) as session:
        shown = security_groups.public(
            session, [access.get(session, OPERATOR, SecurityGroup, group_id)]
        )[0]
    record = shown.model_dump(mode="json", exclude={"rules", "rules_text"})
    record["instance_ids"] = " ".join(shown.instance_ids)
    print_record(record)
    typer.echo("rules:")
    for line in shown.rules_text.splitlines():
        typer.echo(f"  {line}")


@securitygroup_cli.command("update")
@reports_errors
def securitygroup_update(
    group_id: str,
    name: str | None = typer.Option(None, "--name"),
    description: str | None = typer.Option(None, "--description"),
    rule: list[str] | None = RULE,
    rules_file: Path | None = RULES_FILE,
) -> None:
    """Renames and/or replaces the rules; running members follow within seconds (when
    `vdc serve` runs)."""
    text = _rules_text(rule, rules_file)
    body = SecurityGroupUpdate(name=name, description=description, rules_text=text)
    with database(Settings()) as session:
        security_groups.update_group(session, OPERATOR, group_id, body)
    typer.echo(f"updated {group_id}")


@securitygroup_cli.command("del")
@reports_errors
def securitygroup_del(group_id: str) -> None:
    """Deletes a group (not `default`, not one in use or named by another group's rule)."""
    with database(Settings()) as session:
        security_groups.delete_group(session, OPERATOR, group_id)
    typer.echo(f"deleted {group_id}")

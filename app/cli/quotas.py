"""`vdc-manage account quota ...`: an account's limits and usage, and changing them.

vdc-manage account quota alice                               # show
vdc-manage account quota alice --instances 20 --cores 40     # set those two
vdc-manage account quota alice --volume-gib unlimited --images default

A value is a number, `unlimited` (or -1), or `default` (back to VDC_QUOTA_*). Mounted under
the account group by app/cli/manage.py.
"""

from __future__ import annotations

import json

import typer

from app.cli.common import database, fail, print_table, reports_errors
from app.config import Settings
from app.models.quota import MAX_LIMIT, QUOTAS, UNLIMITED, QuotaPublic
from app.services.identity import account_quotas
from app.services.identity.accounts import get_account
from app.services.quotas import number_text

VALUE_HELP = "A number, unlimited (-1) or default."


def parse_limit(option: str, text: str) -> int | None:
    """'20' -> 20, 'unlimited' or '-1' -> -1, 'default' -> None (the settings' default)."""
    value = text.strip().lower()
    if value == "default":
        return None
    if value == "unlimited":
        return UNLIMITED
    try:
        number = int(value)
    except ValueError:
        raise fail(f"--{option} {text!r}: give a number, unlimited or default") from None
    if not UNLIMITED <= number <= MAX_LIMIT:
        raise fail(f"--{option} {text!r}: give -1 (unlimited) or a number from 0 to {MAX_LIMIT}")
    return number


def print_quota(quota: QuotaPublic) -> None:
    rows = []
    for name in QUOTAS:
        item = getattr(quota, name)
        rows.append(
            {
                "quota": name,
                "limit": "unlimited" if item.limit == UNLIMITED else item.limit,
                "used": number_text(item.used),
                "source": "exempt" if quota.exempt else "default" if item.is_default else "set",
            }
        )
    typer.echo(f"account_id: {quota.account_id}")
    print_table(rows, ["quota", "limit", "used", "source"])


@reports_errors
def quota_command(
    account_id: str = typer.Argument(..., help="Account id or name."),
    instances: str | None = typer.Option(None, "--instances", help=VALUE_HELP),
    cores: str | None = typer.Option(None, "--cores", help=VALUE_HELP),
    memory_mib: str | None = typer.Option(None, "--memory-mib", help=VALUE_HELP),
    volume_gib: str | None = typer.Option(None, "--volume-gib", help=VALUE_HELP),
    images: str | None = typer.Option(None, "--images", help=VALUE_HELP),
    image_gib: str | None = typer.Option(None, "--image-gib", help=VALUE_HELP),
    security_groups: str | None = typer.Option(None, "--security-groups", help=VALUE_HELP),
    key_pairs: str | None = typer.Option(None, "--key-pairs", help=VALUE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the quota as JSON."),
) -> None:
    """Shows an account's quota (limit, usage); with options, sets those limits first."""
    given = {
        "instances": instances,
        "cores": cores,
        "memory_mib": memory_mib,
        "volume_gib": volume_gib,
        "images": images,
        "image_gib": image_gib,
        "security_groups": security_groups,
        "key_pairs": key_pairs,
    }
    changes = {
        name: parse_limit(name.replace("_", "-"), text)
        for name, text in given.items()
        if text is not None
    }
    settings = Settings()
    with database(settings) as session:
        account = get_account(session, account_id)
        if changes:
            quota = account_quotas.set_limits(session, settings, account.id, changes)
        else:
            quota = account_quotas.show(session, settings, account)
    if as_json:
        typer.echo(json.dumps(quota.model_dump(mode="json"), indent=2))
    else:
        print_quota(quota)

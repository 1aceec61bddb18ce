"""`vdc-manage doctor`: lists what the hosts and the data dir hold that the database does
not account for, and what it says should be there but is not (app/services/doctor.py)."""

from __future__ import annotations

import json

import typer

from app.cli.common import database, print_table, reports_errors
from app.config import Settings
from app.services import doctor


@reports_errors
def doctor_command(
    as_json: bool = typer.Option(False, "--json", help="One JSON list of findings."),
) -> None:
    """Lists leaks: what hosts and the data dir hold that the database does not know.

    Compares the database with every host (domains, volumes, DHCP entries and leases,
    network filters) and with the data dir (image files, console logs), both ways. Exits 1 when
    it found anything, so scripts and tests can use it.
    """
    settings = Settings()
    with database(settings) as session:
        findings = doctor.examine(session, settings)
    if as_json:
        typer.echo(json.dumps([vars(f) for f in findings], indent=2))
    elif not findings:
        typer.echo("no differences: every host and the data dir match the database")
    else:
        print_table([vars(f) for f in findings], ["where", "kind", "name", "problem"])
    if findings:
        raise typer.Exit(1)

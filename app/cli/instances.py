"""`vdc-manage instance ...`: instances, from the operator's side.

vdc-manage instance list [--state running] [--host-id hn-xxxxxxxx] [--limit 100] [--all]
vdc-manage instance force-state i-xxxxxxxx stopped --reason "..."
vdc-manage instance eject i-xxxxxxxx
vdc-manage instance image i-xxxxxxxx --display-name "debian 12" [--prepare] --wait

Like the API, eject and image record what is wanted and queue a job; the running server's
worker does the host side.

`instance list` is the command an operator runs most, each time a new process: its module
imports only what the table needs, and the other commands import the instance and image
services (with the hypervisor layer and libvirt behind them, ~50 ms) when they run.
"""

from __future__ import annotations

import time

import typer

from app.cli.common import OPERATOR, database, fail, print_record, print_table, reports_errors
from app.config import Settings
from app.models import Image, Instance
from app.models.image import ImageCapture, ImageState
from app.models.instance import InstanceState
from app.services import access
from app.services.compute import instance_table
from app.services.listing import DEFAULT_LIMIT, MAX_LIMIT, PageRequest

instance_cli = typer.Typer(help="Instances (operator's view).", no_args_is_help=True)


@instance_cli.command("list")
@reports_errors
def instance_list(
    state: str | None = typer.Option(None, "--state"),
    host_id: str | None = typer.Option(None, "--host-id"),
    account_id: str | None = typer.Option(None, "--account-id"),
    limit: int = typer.Option(DEFAULT_LIMIT, "--limit", min=1, max=MAX_LIMIT, help="Rows shown"),
    offset: int = typer.Option(0, "--offset", min=0, help="Rows skipped"),
    sort: str = typer.Option("created_at", "--sort", help="A field; -field for descending"),
    every: bool = typer.Option(False, "--all", help="Every instance"),
) -> None:
    """One page of instances (the oldest first); a note on stderr tells how many more."""
    filters = {"state": state, "host_node_id": host_id, "account_id": account_id}
    with database(Settings()) as session:
        page = PageRequest(limit=MAX_LIMIT if every else limit, offset=offset, sort=sort)
        table, total = instance_table.table_page(session, OPERATOR, page, **filters)
        # --all: the rest in one read, now that the total is known. Each page sorts every
        # matching row to skip to its offset: 10,000 rows in pages of 1,000 were ten sorts.
        more = table
        while every and more and offset + len(table) < total:
            page = PageRequest(limit=total, offset=offset + len(table), sort=sort)
            more, total = instance_table.table_page(session, OPERATOR, page, **filters)
            table += more
    print_table(table, list(instance_table.COLUMNS))
    shown_to = offset + len(table)
    if not every and shown_to < total:
        typer.echo(
            f"{offset + 1}-{shown_to} of {total} instances; "
            f"--offset {shown_to} for the next {limit}, --all for every one",
            err=True,
        )


@instance_cli.command("show")
@reports_errors
def instance_show(instance_id: str) -> None:
    from app.services.compute import instances  # see the module's docstring

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
    from app.services.compute import instances  # see the module's docstring

    with database(Settings()) as session:
        instances.force_state(session, instance_id, state, reason)
    typer.echo(f"{instance_id} is now {state}")


@instance_cli.command("eject")
@reports_errors
def instance_eject(instance_id: str) -> None:
    """Takes the installer CD out of an instance launched from an ISO (live if it runs):
    its next start boots the disk."""
    from app.services.compute import instances  # see the module's docstring

    with database(Settings()) as session:
        instances.eject(session, OPERATOR, instance_id)
    typer.echo(f"{instance_id}: CD ejected")


@instance_cli.command("image")
@reports_errors
def instance_image(
    instance_id: str,
    display_name: str = typer.Option("", "--display-name"),
    description: str = typer.Option("", "--description"),
    is_public: bool = typer.Option(False, "--is-public", help="Visible to every account."),
    prepare: bool = typer.Option(
        False, "--prepare", help="Run the `image prepare` steps on the copy (a Linux guest)."
    ),
    wait: bool = typer.Option(False, "--wait", help="Follow the capture until it ends."),
    timeout: float = typer.Option(3600.0, "--timeout", help="Seconds --wait waits at most."),
) -> None:
    """Captures a stopped instance's root disk as a new image of the instance's account
    (Wakame-vdc's instance backup); prints the image id and its state."""
    body = ImageCapture(
        display_name=display_name, description=description, is_public=is_public, prepare=prepare
    )
    from app.services.images import capture  # see the module's docstring

    settings = Settings()
    with database(settings) as session:
        image = capture.request_capture(session, settings, OPERATOR, instance_id, body)
    if wait:
        image = _follow(image.id, timeout)
        if image.state == ImageState.error:
            raise fail(f"{image.id} error: {image.state_reason}")
    typer.echo(f"{image.id} {image.state}")


def _follow(image_id: str, timeout: float) -> Image:
    """Polls the image until it is no longer creating, telling each step on stderr."""
    deadline = time.monotonic() + timeout
    told = ""
    while True:
        with database(Settings()) as session:
            image = access.get(session, OPERATOR, Image, image_id)
        if image.state != ImageState.creating:
            return image
        step = f"{image.progress:3d}% {image.state_reason}"
        if step != told:
            typer.echo(step, err=True)
            told = step
        if time.monotonic() > deadline:
            raise fail(f"{image_id} is still creating after {timeout:g}s; is `vdc serve` running?")
        time.sleep(0.5)

"""`vdc-manage volume ...`: volumes, from the operator's side.

vdc-manage volume create --account-id a-xxxxxxxx --size 64M [--instance-id i-xxxxxxxx]
vdc-manage volume attach vol-xxxxxxxx i-xxxxxxxx [--device vdc] --wait

Like the API, these record what is wanted and queue a job; the running server's worker
does the host side. `--wait` follows the volume until it settles.
"""

from __future__ import annotations

import re
import time

import typer

from app.cli.common import OPERATOR, database, fail, print_record, print_table, reports_errors
from app.config import Settings
from app.models import Volume
from app.models.volume import VolumeAttach, VolumeCreate, VolumePublic, VolumeUpdate
from app.services import access
from app.services.identity.accounts import get_account
from app.services.listing import MAX_LIMIT, PageRequest
from app.services.storage import volumes

volume_cli = typer.Typer(help="Volumes (attach to running instances).", no_args_is_help=True)

COLUMNS = ["id", "account_id", "state", "size_mib", "host_node_id", "instance_id", "device"]
SETTLED = ("available", "attached", "deleted", "error")
_SIZE = re.compile(r"^(\d+)\s*(M|MiB|G|GiB)$", re.IGNORECASE)


def parse_size(text: str) -> tuple[int | None, int | None]:
    """'64M' -> (64, None); '10G' -> (None, 10)."""
    match = _SIZE.match(text.strip())
    if match is None:
        raise fail(f"--size {text!r}: give a number with M or G, e.g. 64M or 10G")
    number, unit = int(match.group(1)), match.group(2).upper()
    return (number, None) if unit.startswith("M") else (None, number)


def _wait(volume_id: str, timeout: float) -> VolumePublic:
    deadline = time.monotonic() + timeout
    while True:
        with database(Settings()) as session:
            shown = VolumePublic.of(access.get(session, OPERATOR, Volume, volume_id))
        if shown.state in SETTLED:
            return shown
        if time.monotonic() > deadline:
            raise fail(
                f"{volume_id} is still {shown.state} after {timeout:g}s; is `vdc serve` running?"
            )
        time.sleep(0.5)


def _report(shown: VolumePublic, wait: bool, timeout: float) -> None:
    if not wait:
        typer.echo(f"{shown.id} {shown.state}")
        return
    settled = _wait(shown.id, timeout)
    if settled.state == "error":
        raise fail(f"{settled.id} error: {settled.state_reason}")
    typer.echo(f"{settled.id} {settled.state}")


WAIT = typer.Option(False, "--wait", help="Follow the volume until it settles.")
TIMEOUT = typer.Option(120.0, "--timeout", help="Seconds --wait waits at most.")


@volume_cli.command("create")
@reports_errors
def volume_create(
    account_id: str = typer.Option(..., "--account-id", help="Owner account (id or name)."),
    size: str | None = typer.Option(None, "--size", help="64M, 10G, ... (blank volume)."),
    image_id: str | None = typer.Option(None, "--image-id", help="Start from this image."),
    instance_id: str | None = typer.Option(
        None, "--instance-id", help="Make it on this instance's host (it attaches only there)."
    ),
    host_id: str | None = typer.Option(None, "--host-id", help="Or on this host."),
    name: str = typer.Option("", "--name", help="Display name."),
    wait: bool = WAIT,
    timeout: float = TIMEOUT,
) -> None:
    """Creates a volume and prints its id and state."""
    size_mib, size_gib = parse_size(size) if size is not None else (None, None)
    body = VolumeCreate(
        size_mib=size_mib,
        size_gib=size_gib,
        image_id=image_id,
        instance_id=instance_id,
        host_node_id=host_id,
        display_name=name,
    )
    with database(Settings()) as session:
        owner = get_account(session, account_id)
        shown = VolumePublic.of(volumes.create_volume(session, Settings(), owner, body))
    _report(shown, wait, timeout)


@volume_cli.command("list")
@reports_errors
def volume_list(
    account_id: str | None = typer.Option(None, "--account-id", help="Only this account's."),
    instance_id: str | None = typer.Option(None, "--instance-id"),
    state: str | None = typer.Option(None, "--state"),
) -> None:
    with database(Settings()) as session:
        owner_id = get_account(session, account_id).id if account_id else None
        rows, _ = volumes.list_volumes(
            session,
            OPERATOR,
            PageRequest(limit=MAX_LIMIT),
            account_id=owner_id,
            instance_id=instance_id,
            state=state,
        )
        table = [VolumePublic.of(r).model_dump() for r in rows]
    print_table(table, COLUMNS)


@volume_cli.command("show")
@reports_errors
def volume_show(volume_id: str) -> None:
    with database(Settings()) as session:
        shown = VolumePublic.of(access.get(session, OPERATOR, Volume, volume_id))
    print_record(shown.model_dump(mode="json"))


@volume_cli.command("update")
@reports_errors
def volume_update(
    volume_id: str,
    name: str | None = typer.Option(None, "--name"),
    delete_on_termination: bool | None = typer.Option(
        None,
        "--delete-on-termination/--keep-on-termination",
        help="What terminating its instance does to it.",
    ),
) -> None:
    body = VolumeUpdate(display_name=name, delete_on_termination=delete_on_termination)
    with database(Settings()) as session:
        volumes.update_volume(session, OPERATOR, volume_id, body)
    typer.echo(f"updated {volume_id}")


@volume_cli.command("attach")
@reports_errors
def volume_attach(
    volume_id: str,
    instance_id: str,
    device: str | None = typer.Option(None, "--device", help="vdb..vdz; default: the first free."),
    wait: bool = WAIT,
    timeout: float = TIMEOUT,
) -> None:
    """Attaches to a running instance (live) or a stopped one (at its next boot)."""
    body = VolumeAttach(instance_id=instance_id, device=device)
    with database(Settings()) as session:
        shown = VolumePublic.of(volumes.attach_volume(session, OPERATOR, volume_id, body))
    _report(shown, wait, timeout)


@volume_cli.command("detach")
@reports_errors
def volume_detach(volume_id: str, wait: bool = WAIT, timeout: float = TIMEOUT) -> None:
    """Detaches; a running guest must release the disk within VDC_DETACH_TIMEOUT seconds."""
    with database(Settings()) as session:
        shown = VolumePublic.of(volumes.detach_volume(session, OPERATOR, volume_id))
    _report(shown, wait, timeout)


@volume_cli.command("del")
@reports_errors
def volume_del(volume_id: str, wait: bool = WAIT, timeout: float = TIMEOUT) -> None:
    """Deletes an available volume (detach it first)."""
    with database(Settings()) as session:
        shown = VolumePublic.of(volumes.delete_volume(session, OPERATOR, volume_id))
    _report(shown, wait, timeout)

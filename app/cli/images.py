"""`vdc-manage image ...`: machine images, registered the way Wakame-vdc's operators know.

vdc-manage image add local PATH --arch x86_64 --account-id a-shpoolxx --description "..."
vdc-manage image list [--account-id a-xxxxxxxx]
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from app.cli.common import OPERATOR, database, print_record, print_table, reports_errors
from app.cli.image_prepare import image_prepare_command
from app.cli.progress import copy_progress
from app.config import KNOWN_ARCHES, Settings
from app.ids import SHARED_ACCOUNT_ID
from app.models import Image
from app.models.image import ImagePublic, ImageUpdate
from app.models.image_copy import ImageCopyPublic
from app.services import access
from app.services.images import images
from app.services.images.images import ImageSpec
from app.services.listing import MAX_LIMIT, PageRequest
from app.services.storage import image_copies

image_cli = typer.Typer(help="Machine images.", no_args_is_help=True)
image_add_cli = typer.Typer(help="Register an image.", no_args_is_help=True)
image_cli.add_typer(image_add_cli, name="add")
image_cli.command("prepare")(image_prepare_command)


@image_add_cli.command("local")
@reports_errors
def image_add_local(
    path: Path = typer.Argument(..., help="Image or ISO file inside an import directory."),
    arch: str = typer.Option(..., "--arch", help=f"One of: {', '.join(KNOWN_ARCHES)}."),
    account_id: str = typer.Option(SHARED_ACCOUNT_ID, "--account-id", help="Owner account."),
    description: str = typer.Option("", "--description"),
    display_name: str = typer.Option("", "--display-name"),
    is_public: bool = typer.Option(False, "--is-public", help="Visible to every account."),
    convert: str | None = typer.Option(None, "--convert", help="Store as qcow2 (or raw)."),
    metadata_drive: bool = typer.Option(
        False,
        "--metadata-drive",
        help="Its instances get Wakame-vdc's metadata drive (LABEL=METADATA) by default.",
    ),
) -> None:
    """Copies a local image file into vdc's store and prints its new id (wmi-...).

    A disk image (raw, qcow2, vmdk, ...) or an installer CD (an ISO 9660 file, kept as kind
    `iso`: instances launched from it get it as a CD-ROM and a blank root disk)."""
    settings = Settings()
    spec = ImageSpec(
        arch=arch,
        account_id=account_id,
        description=description,
        display_name=display_name,
        is_public=is_public,
        convert_to=convert,
        metadata_drive=metadata_drive,
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
    columns = [
        "id",
        "account_id",
        "arch",
        "format",
        "kind",
        "state",
        "virtual_size",
        "is_public",
        "display_name",
    ]
    print_table(table, columns)


@image_cli.command("show")
@reports_errors
def image_show(image_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    with database(Settings()) as session:
        image = access.get(session, OPERATOR, Image, image_id)
        public = ImagePublic.model_validate(image, from_attributes=True).model_dump(mode="json")
        public["copies"] = [
            ImageCopyPublic.model_validate(copy, from_attributes=True).model_dump(mode="json")
            for copy in image_copies.copies_of(session, image.id)
        ]
    if as_json:
        typer.echo(json.dumps(public, indent=2))
    else:
        copies = [f"{c['host_node_id']} {c['state']} {c['size']} bytes" for c in public["copies"]]
        print_record({**public, "copies": "; ".join(copies) or "(only in vdc's image store)"})


@image_cli.command("update")
@reports_errors
def image_update(
    image_id: str,
    display_name: str | None = typer.Option(None, "--display-name"),
    description: str | None = typer.Option(None, "--description"),
    is_public: bool | None = typer.Option(None, "--public/--private"),
    metadata_drive: bool | None = typer.Option(
        None,
        "--metadata-drive/--no-metadata-drive",
        help="Whether its instances get the metadata drive by default (a launch may say "
        "otherwise).",
    ),
) -> None:
    changes = {
        k: v
        for k, v in {
            "display_name": display_name,
            "description": description,
            "is_public": is_public,
            "metadata_drive": metadata_drive,
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

"""`vdc-manage keypair ...`: SSH key pairs, from the operator's side.

vdc-manage keypair import laptop --account-id a-xxxxxxxx --public-key-file ~/.ssh/id_ed25519.pub
vdc-manage keypair generate deploy --account-id a-xxxxxxxx --private-key-file ./deploy.key
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TextIO

import typer

from app.cli.common import OPERATOR, database, fail, print_record, print_table, reports_errors
from app.config import Settings
from app.models import SshKeyPair
from app.models.keypair import KeyPairPublic
from app.services import access
from app.services.identity import keypairs
from app.services.identity.accounts import get_account
from app.services.listing import MAX_LIMIT, PageRequest

keypair_cli = typer.Typer(help="SSH key pairs.", no_args_is_help=True)

COLUMNS = ["id", "account_id", "name", "key_type", "fingerprint"]


@keypair_cli.command("import")
@reports_errors
def keypair_import(
    name: str,
    account_id: str = typer.Option(..., "--account-id", help="Owner account (id or name)."),
    public_key_file: Path | None = typer.Option(
        None, "--public-key-file", help="An OpenSSH .pub file."
    ),
    public_key: str | None = typer.Option(None, "--public-key", help="The key line itself."),
) -> None:
    """Registers a public key for an account and prints the key pair's id (ssh-...)."""
    if (public_key_file is None) == (public_key is None):
        raise fail("give exactly one of --public-key-file and --public-key")
    if public_key_file is not None:
        try:
            public_key = public_key_file.read_text(errors="replace")
        except OSError as exc:
            raise fail(f"cannot read {public_key_file}: {exc.strerror}") from None
    assert public_key is not None
    settings = Settings()
    with database(settings) as session:
        owner = get_account(session, account_id)
        keypair = keypairs.import_key(session, settings, owner, name, public_key)
    typer.echo(keypair.id)


@keypair_cli.command("generate")
@reports_errors
def keypair_generate(
    name: str,
    account_id: str = typer.Option(..., "--account-id", help="Owner account (id or name)."),
    key_type: str = typer.Option(
        "ssh-ed25519", "--type", help="ssh-ed25519, ssh-rsa or ecdsa-sha2-nistp256."
    ),
    private_key_file: Path | None = typer.Option(
        None, "--private-key-file", help="Write the private key here (a new 0600 file)."
    ),
) -> None:
    """Generates a key pair. With a file: prints the id; without: prints the private key."""
    out = _create_private_file(private_key_file) if private_key_file is not None else None
    try:
        settings = Settings()
        with database(settings) as session:
            owner = get_account(session, account_id)
            keypair, private_key = keypairs.generate_key(session, settings, owner, name, key_type)
            if out is not None:
                try:
                    out.write(private_key)
                    out.flush()
                except OSError as exc:
                    # Already committed, and useless without its private key: take it back.
                    keypairs.delete_keypair(session, owner, keypair.id)
                    raise fail(f"cannot write {private_key_file}: {exc.strerror}") from None
    except BaseException:
        if out is not None and private_key_file is not None:
            out.close()
            private_key_file.unlink(missing_ok=True)  # ours: created with O_EXCL
        raise
    if out is not None:
        out.close()
        typer.echo(keypair.id)
        return
    # stdout stays a usable key file (`... > deploy.key`); the rest goes to stderr.
    typer.echo(private_key, nl=False)
    typer.echo(f"key pair {keypair.id} ({keypair.fingerprint})", err=True)
    typer.secho("The private key is shown only once; store it now.", err=True, fg="yellow")


def _create_private_file(path: Path) -> TextIO:
    """Created before the key exists, so a file already there is never overwritten and the
    key is never readable by anyone else, not even for a moment."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise fail(f"cannot create {path}: {exc.strerror}") from None
    return os.fdopen(fd, "w", encoding="ascii")


@keypair_cli.command("list")
@reports_errors
def keypair_list(
    account_id: str | None = typer.Option(None, "--account-id", help="Only this account's."),
) -> None:
    """Key pairs of every account (or of one), with their fingerprints."""
    with database(Settings()) as session:
        owner_id = get_account(session, account_id).id if account_id else None
        rows, _ = keypairs.list_keypairs(
            session, OPERATOR, PageRequest(limit=MAX_LIMIT), account_id=owner_id
        )
        table = [r.model_dump() for r in rows]
    print_table(table, COLUMNS)


@keypair_cli.command("show")
@reports_errors
def keypair_show(keypair_id: str) -> None:
    """One key pair, with its whole public key line."""
    with database(Settings()) as session:
        keypair = access.get(session, OPERATOR, SshKeyPair, keypair_id)
        shown = KeyPairPublic.model_validate(keypair, from_attributes=True)
    print_record(shown.model_dump(mode="json"))


@keypair_cli.command("del")
@reports_errors
def keypair_del(keypair_id: str) -> None:
    """Deletes a key pair (refused while a live instance uses it)."""
    with database(Settings()) as session:
        keypairs.delete_keypair(session, OPERATOR, keypair_id)
    typer.echo(f"deleted {keypair_id}")

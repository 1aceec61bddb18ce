"""`vdc`: runs the server (`vdc serve`) and migrates its database (`vdc migrate`)."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
import uvicorn

from app import data_dir, heap
from app.cli.common import require_migrated, run_cli
from app.config import Settings, split_bind
from app.db import engine_for, session_scope
from app.job_process import JobProcess
from app.listeners import run_listeners
from app.metadata_process import MetadataProcess
from app.migrations import current_revision, head_revision, upgrade
from app.services.identity import accounts
from app.services.images import images

cli = typer.Typer(help="The vdc control plane server.", no_args_is_help=True, add_completion=False)


@cli.command()
def migrate() -> None:
    """Creates or upgrades the database schema (SQLite or PostgreSQL) to this version."""
    settings = Settings()
    data_dir.make_private(settings)
    url = settings.effective_database_url
    before = current_revision(url)
    upgrade(url)
    after = head_revision(url)
    if before == after:
        typer.echo(f"database already at revision {after}")
    else:
        typer.echo(f"database migrated from {before or 'empty'} to revision {after}")


@cli.command()
def serve(
    migrate_first: bool = typer.Option(
        False, "--migrate", help="Migrate the database first instead of refusing to start."
    ),
) -> None:
    """Serves the web UI (/), the API and its docs (/docs) on VDC_API_BIND, and the EC2
    metadata service on VDC_METADATA_BIND; the job workers and the metadata service run
    in processes of their own."""
    settings = Settings()
    data_dir.make_private(settings)
    data_dir.raise_open_files_limit()
    if migrate_first:
        upgrade(settings.effective_database_url)
    require_migrated(settings)
    _prepare(settings)
    host, port = split_bind(settings.api_bind)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from app.main import create_app

    app = create_app(settings, jobs_in_process=False)
    # proxy_headers off: the client address must be the real peer, never a header's claim.
    configs = [uvicorn.Config(app, host=host, port=port, proxy_headers=False, log_level="info")]
    typer.echo(f"vdc web UI, API and docs on http://{settings.api_bind}/ (docs: /docs)")
    if settings.api_socket:
        socket_path = Path(settings.api_socket)
        socket_path.unlink(missing_ok=True)
        # The same app, so its lifespan runs once, with the TCP listener.
        configs.append(uvicorn.Config(app, uds=str(socket_path), lifespan="off", log_level="info"))
        typer.echo(f"vdc API also on unix socket {socket_path}")
    job_process = JobProcess(settings)
    job_process.start()
    typer.echo(f"job workers: {settings.workers} (their own process)")
    metadata = MetadataProcess(settings)
    try:
        metadata.start()
    except BaseException:
        job_process.stop()
        raise
    typer.echo(f"EC2 metadata service on {settings.metadata_bind} (its own process)")
    # Last: everything the server keeps (the app, its routes, the ORM's mappers) exists now,
    # and the collector need not scan it again at every full collection (app/heap.py).
    heap.freeze_start_up()
    try:
        run_listeners(configs)
    finally:
        metadata.stop()
        job_process.stop()


def _prepare(settings: Settings) -> None:
    """Start-up housekeeping: the default import folder, interrupted uploads, the first key."""
    default_import = settings.data_dir / "import"
    if default_import in settings.allowed_import_dirs:
        default_import.mkdir(parents=True, exist_ok=True)
    swept = images.sweep_partials(settings)
    if swept:
        typer.echo(f"removed {swept} partial image file(s) left by an interrupted import")
    engine = engine_for(settings)
    try:
        with session_scope(engine) as session:
            created = accounts.bootstrap_admin_key(session, settings.admin_key_file)
    finally:
        engine.dispose()
    if created:
        typer.echo(f"created the first admin API key: {settings.admin_key_file} (mode 0600)")
    elif settings.admin_key_file.exists():
        typer.echo(f"admin API key: {settings.admin_key_file}")
    else:
        typer.echo("no admin key file; make a key with `vdc-manage account add NAME --admin`")


def main() -> None:
    run_cli(cli)


if __name__ == "__main__":
    main()

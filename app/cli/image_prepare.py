"""`vdc-manage image prepare PATH ...` and `vdc-manage guest-script`: making an image ready
for vdc, as the seed's "Post Install Tweaking" section does by hand.

vdc-manage image prepare my.raw --install-init --convert qcow2 \\
    --register --arch x86_64 --account-id a-shpoolxx --description "Debian 12"
vdc-manage guest-script > vdc-init
"""

from __future__ import annotations

from pathlib import Path

import typer

from app.cli.common import database, fail, reports_errors
from app.cli.progress import copy_progress
from app.config import KNOWN_ARCHES, Settings
from app.guest import vdc_init_script, vdc_init_unit
from app.ids import SHARED_ACCOUNT_ID
from app.services.identity.accounts import get_account
from app.services.images import images, prepare
from app.services.images.disk_images import CONVERSION_TARGETS
from app.services.images.images import ImageSpec
from app.services.images.prepare import PrepareOptions, PrepareReport


@reports_errors
def image_prepare_command(
    path: Path = typer.Argument(..., help="The image file (raw, qcow2, ...); changed in place."),
    install_init: bool = typer.Option(
        False, "--install-init", help="Install vdc-init and run it at boot (systemd or rc.local)."
    ),
    init_user: str | None = typer.Option(
        None, "--init-user", help="vdc-init installs the public keys for this user, not root."
    ),
    nameserver: list[str] = typer.Option(
        [], "--nameserver", help="Add this name server to /etc/resolv.conf; repeat for more."
    ),
    convert: str | None = typer.Option(
        None, "--convert", help="Then write a copy in this format (qcow2 or raw) beside PATH."
    ),
    register: bool = typer.Option(
        False, "--register", help="Then register the result, as `image add local` does."
    ),
    arch: str | None = typer.Option(
        None, "--arch", help=f"With --register: one of {', '.join(KNOWN_ARCHES)}."
    ),
    account_id: str = typer.Option(
        SHARED_ACCOUNT_ID, "--account-id", help="With --register: the owner account."
    ),
    description: str = typer.Option("", "--description", help="With --register."),
    display_name: str = typer.Option("", "--display-name", help="With --register."),
    is_public: bool = typer.Option(False, "--is-public", help="With --register."),
) -> None:
    """Gets a Linux image ready for vdc, offline with libguestfs (no mount, no kpartx).

    Removes persistent-net udev rules, HWADDR= lines and SSH host keys, makes sure acpiphp
    loads at boot (volume hot-attach), empties log files; optionally adds name servers and
    installs vdc-init. Prints what it changed; with --register, the new image id comes last.
    The libguestfs appliance takes about 25 s to start where KVM does not work.
    """
    settings = Settings()
    options = PrepareOptions(
        install_init=install_init, init_user=init_user, nameservers=tuple(nameserver)
    )
    options.check()
    if convert is not None and convert not in CONVERSION_TARGETS:
        raise fail(f"--convert {convert!r}: choose one of {', '.join(sorted(CONVERSION_TARGETS))}")
    spec = None
    if register:
        if arch is None:
            raise fail("--register needs --arch (e.g. --arch x86_64)")
        spec = ImageSpec(
            arch=arch,
            account_id=account_id,
            description=description,
            display_name=display_name,
            is_public=is_public,
        )
        _check_registration(settings, path, spec)  # before minutes of work, not after
    info = prepare.check_image(settings, path)
    if convert is not None and convert != info.format:
        target = prepare.converted_path(path, convert)
        if target.exists():
            raise fail(f"{target} exists already: --convert will not overwrite it")

    typer.secho(f"preparing {path} ({info.format}); starting the libguestfs appliance...", err=True)
    report = prepare.prepare(settings, path, options, info)
    _print_report(report)

    result = path
    if convert == info.format:
        typer.echo(f"already {convert}: nothing to convert")
    elif convert is not None:
        with copy_progress() as progress:
            result = prepare.convert(settings, path, info, convert, progress)
        typer.echo(f"converted to {convert}: {result}")
    if spec is not None:
        with database(settings) as session, copy_progress() as progress:
            image = images.register_local(session, settings, result.absolute(), spec, progress)
        typer.echo(image.id)


def _check_registration(settings: Settings, path: Path, spec: ImageSpec) -> None:
    spec.check()
    images.check_local_path(settings, path.absolute())  # the converted file lands beside it
    with database(settings) as session:
        get_account(session, spec.account_id)


def _print_report(report: PrepareReport) -> None:
    typer.echo(f"prepared {report.path}: {report.operating_system}")
    for change in report.changes:
        typer.echo(f"  changed: {change}")
    for note in report.notes:
        typer.echo(f"  note: {note}")
    for warning in report.warnings:
        typer.secho(f"  warning: {warning}", fg=typer.colors.YELLOW)
    if not report.changes:
        typer.echo("  nothing needed changing")


def guest_script_command(
    systemd_unit: bool = typer.Option(
        False, "--systemd-unit", help="Print vdc-init's systemd unit instead."
    ),
) -> None:
    """Prints vdc-init, the boot script for images without cloud-init (POSIX sh).

    It reads vdc's metadata service: sets the hostname and /etc/hosts, installs the public
    key, makes SSH host keys, runs #! user-data, once per instance. Install it as
    /usr/local/sbin/vdc-init and run it from rc.local or its systemd unit (docs/guest-images.md),
    or let `vdc-manage image prepare --install-init` do both.
    """
    typer.echo(vdc_init_unit() if systemd_unit else vdc_init_script(), nl=False)

"""`vdc-manage`: the operator's admin CLI, working on the database directly (as Wakame-vdc's).

vdc-manage account add NAME [--admin]
vdc-manage account quota NAME [--instances 20 --cores 40 ...]
vdc-manage image add local PATH --arch x86_64 --account-id a-shpoolxx --description "..."
vdc-manage image prepare PATH --install-init --convert qcow2 --register --arch x86_64
vdc-manage guest-script > vdc-init
vdc-manage volume create --account-id a-xxxxxxxx --size 64M --instance-id i-xxxxxxxx --wait
vdc-manage securitygroup create web --account-id a-xxxxxxxx --rule tcp:22,22,ip4:0.0.0.0/0

This module only assembles the command groups; each lives in its own module.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import typer

from app.cli.common import run_cli

cli = typer.Typer(
    help="vdc admin CLI (works on the database directly).",
    no_args_is_help=True,
    add_completion=False,
)


@cli.callback()
def _root() -> None:
    """vdc admin CLI (works on the database directly)."""
    # A callback keeps `vdc-manage doctor` a subcommand when it is the only one loaded.


# Each command group is imported only when it is used: a command's start-up is most of its
# time (`vdc-manage instance list` should not load libguestfs helpers and progress bars).
def _account() -> None:
    from app.cli.accounts import account_cli
    from app.cli.quotas import quota_command

    # `account quota` lives in its own module (app/cli/quotas.py), added to the account group.
    account_cli.command("quota")(quota_command)
    cli.add_typer(account_cli, name="account")


def _image() -> None:
    from app.cli.images import image_cli

    cli.add_typer(image_cli, name="image")


def _host() -> None:
    from app.cli.hosts import host_cli

    cli.add_typer(host_cli, name="host")


def _network() -> None:
    from app.cli.networks import network_cli

    cli.add_typer(network_cli, name="network")


def _instance() -> None:
    from app.cli.instances import instance_cli

    cli.add_typer(instance_cli, name="instance")


def _keypair() -> None:
    from app.cli.keypairs import keypair_cli

    cli.add_typer(keypair_cli, name="keypair", help="SSH key pairs.")


def _volume() -> None:
    from app.cli.volumes import volume_cli

    cli.add_typer(volume_cli, name="volume")


def _securitygroup() -> None:
    from app.cli.security_groups import securitygroup_cli

    cli.add_typer(securitygroup_cli, name="securitygroup")


def _guest_script() -> None:
    from app.cli.image_prepare import guest_script_command

    cli.command("guest-script")(guest_script_command)


def _doctor() -> None:
    from app.cli.doctor import doctor_command

    cli.command("doctor")(doctor_command)


GROUPS: dict[str, Callable[[], None]] = {
    "account": _account,
    "image": _image,
    "host": _host,
    "network": _network,
    "instance": _instance,
    "keypair": _keypair,
    "volume": _volume,
    "securitygroup": _securitygroup,
    "guest-script": _guest_script,
    "doctor": _doctor,
}


def build(argv: list[str]) -> typer.Typer:
    """The CLI with the group named first on the command line, or every group (for
    `--help`, no arguments, or a name that is none of them)."""
    named = GROUPS.get(argv[0]) if argv else None
    for add in [named] if named else GROUPS.values():
        add()
    return cli


def main() -> None:
    run_cli(build(sys.argv[1:]))


if __name__ == "__main__":
    main()

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

import typer

from app.cli.accounts import account_cli
from app.cli.common import run_cli
from app.cli.doctor import doctor_command
from app.cli.hosts import host_cli
from app.cli.image_prepare import guest_script_command
from app.cli.images import image_cli
from app.cli.instances import instance_cli
from app.cli.keypairs import keypair_cli
from app.cli.networks import network_cli
from app.cli.quotas import quota_command
from app.cli.security_groups import securitygroup_cli
from app.cli.volumes import volume_cli

cli = typer.Typer(
    help="vdc admin CLI (works on the database directly).",
    no_args_is_help=True,
    add_completion=False,
)
# `account quota` lives in its own module (app/cli/quotas.py), added to the account group.
account_cli.command("quota")(quota_command)
cli.add_typer(account_cli, name="account")
cli.add_typer(image_cli, name="image")
cli.add_typer(host_cli, name="host")
cli.add_typer(network_cli, name="network")
cli.add_typer(instance_cli, name="instance")
cli.add_typer(keypair_cli, name="keypair", help="SSH key pairs.")
cli.add_typer(volume_cli, name="volume")
cli.add_typer(securitygroup_cli, name="securitygroup")
cli.command("guest-script")(guest_script_command)
cli.command("doctor")(doctor_command)


def main() -> None:
    run_cli(cli)


if __name__ == "__main__":
    main()

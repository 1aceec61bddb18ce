"""What vdc ships for the inside of guests: the `vdc-init` boot script and its systemd unit.

Both are package data (read with importlib.resources), so `vdc-manage guest-script` and
`vdc-manage image prepare --install-init` give exactly the files that were tested.
"""

from __future__ import annotations

from importlib.resources import files

SCRIPT_NAME = "vdc-init.sh"
UNIT_NAME = "vdc-init.service"

# Where `image prepare --install-init` puts them in an image (the unit's ExecStart and
# the rc.local line name INSTALLED_SCRIPT).
INSTALLED_SCRIPT = "/usr/local/sbin/vdc-init"
INSTALLED_UNIT = "/etc/systemd/system/vdc-init.service"


def vdc_init_script() -> str:
    return files(__package__).joinpath(SCRIPT_NAME).read_text(encoding="utf-8")


def vdc_init_unit() -> str:
    return files(__package__).joinpath(UNIT_NAME).read_text(encoding="utf-8")

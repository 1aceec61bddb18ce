"""Installing vdc-init into an image (`image prepare --install-init`), in a libguestfs
session that image_prepare.py opened: the script, then a way for the image's init system
to run it at each boot (a systemd unit, or a line in rc.local)."""

from __future__ import annotations

from app.errors import BadRequest
from app.guest import INSTALLED_SCRIPT, INSTALLED_UNIT, vdc_init_script, vdc_init_unit
from app.services.images import guest_edits
from app.services.images.guestfish import GuestFish


def install_vdc_init(fish: GuestFish, user: str | None) -> list[str]:
    """Run after image_checks.check_for_vdc_init has found a shell, an HTTP client and an
    init system for it."""
    changes = []
    script = vdc_init_script()
    if not (fish.is_file(INSTALLED_SCRIPT) and fish.read_text(INSTALLED_SCRIPT) == script):
        fish.call("mkdir-p", INSTALLED_SCRIPT.rsplit("/", 1)[0])
        fish.write_text(INSTALLED_SCRIPT, script, mode=0o755)
        changes.append(f"installed vdc-init as {INSTALLED_SCRIPT}")
    settings, wanted = "/etc/default/vdc-init", f"VDC_INIT_USER={user}\n"
    if user is not None and not (fish.is_file(settings) and fish.read_text(settings) == wanted):
        fish.call("mkdir-p", "/etc/default")
        fish.write_text(settings, wanted)
        changes.append(f"vdc-init installs the public keys for {user} ({settings})")
    return changes + _run_at_boot(fish)


def check_user(fish: GuestFish, user: str) -> None:
    """Before any change: the user vdc-init is to give the keys to must exist."""
    passwd = fish.read_text("/etc/passwd") if fish.is_file("/etc/passwd") else ""
    if user not in guest_edits.passwd_users(passwd):
        raise BadRequest(f"--init-user {user}: the image has no such user in /etc/passwd")


def _run_at_boot(fish: GuestFish) -> list[str]:
    systemd = fish.is_file("/lib/systemd/systemd") or fish.is_file("/usr/lib/systemd/systemd")
    if systemd and fish.is_dir("/etc/systemd/system"):
        wants = "/etc/systemd/system/multi-user.target.wants"
        link, unit = f"{wants}/vdc-init.service", vdc_init_unit()
        installed = fish.is_file(INSTALLED_UNIT) and fish.read_text(INSTALLED_UNIT) == unit
        if installed and fish.is_symlink(link):
            return []
        fish.write_text(INSTALLED_UNIT, unit, mode=0o644)
        fish.call("mkdir-p", wants)
        fish.call("ln-sf", INSTALLED_UNIT, link)
        return [f"enabled {INSTALLED_UNIT} (systemd runs it once the network is online)"]
    for rc_local in ("/etc/rc.local", "/etc/rc.d/rc.local"):
        if fish.is_file(rc_local):
            updated = guest_edits.rc_local_running(fish.read_text(rc_local), INSTALLED_SCRIPT)
            if updated is None:
                return []
            fish.write_text(rc_local, updated, mode=0o755)
            return [f"{rc_local} runs vdc-init at boot"]
    fish.write_text("/etc/rc.local", guest_edits.new_rc_local(INSTALLED_SCRIPT), mode=0o755)
    return ["created /etc/rc.local to run vdc-init at boot (make sure the init system runs it)"]

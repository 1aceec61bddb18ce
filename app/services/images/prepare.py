"""`vdc-manage image prepare`: the seed's "Post Install Tweaking", done offline with libguestfs.

Wakame-vdc's guide mounts the image with kpartx and edits it by hand. Here one libguestfs
appliance (app/services/guestfish.py) finds the Linux root, mounts it as the guest would,
and makes each tweak only where it is needed, so the report lists what really changed:

- persistent-net udev rules removed (and masked), `HWADDR=` lines commented out: each
  instance has a MAC of its own;
- SSH host keys removed: each instance makes its own at first boot;
- `acpiphp` loaded at boot, unless built into the kernel: volume hot-attach needs it;
- log files emptied, rotated and compressed ones removed;
- optionally name servers added, and vdc-init installed to run at boot.

The image is changed in place; conversion and registration (app/services/images.py) come
after, on the prepared file.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from app.config import Settings
from app.errors import BadRequest, Conflict, InvalidImage
from app.services.images import disk_images, guest_edits, image_checks, vdc_init_install
from app.services.images.disk_images import DiskInfo, ProgressCallback
from app.services.images.guestfish import GuestFish, session


@dataclass(frozen=True)
class PrepareOptions:
    install_init: bool = False
    init_user: str | None = None  # vdc-init installs public keys for this user, not root
    nameservers: tuple[str, ...] = ()
    # With install_init: not where an enabled cloud-init reads the metadata already (a
    # captured instance: vdc cannot ask its owner which one they meant to use).
    unless_cloud_init: bool = False

    def check(self) -> None:
        for server in self.nameservers:
            try:
                ipaddress.ip_address(server)
            except ValueError:
                raise BadRequest(f"--nameserver {server!r} is not an IP address") from None
        if self.init_user is not None:
            if not self.install_init:
                raise BadRequest("--init-user is a setting of vdc-init: add --install-init")
            if not guest_edits.valid_user_name(self.init_user):
                raise BadRequest(f"--init-user {self.init_user!r} is not a user name")


@dataclass
class PrepareReport:
    path: Path
    info: DiskInfo
    operating_system: str = ""
    changes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# --- before the appliance starts: refuse what cannot or must not be changed -------------


def check_image(settings: Settings, path: Path) -> DiskInfo:
    """The image's format and size, or a clear refusal (nothing is changed here)."""
    try:
        real = path.resolve(strict=True)
    except (FileNotFoundError, RuntimeError) as exc:
        raise InvalidImage(f"{path}: no such file") from exc
    if not real.is_file():
        raise InvalidImage(f"{path} is not a regular file")
    stores = (settings.image_dir, settings.instance_dir, settings.volume_dir)
    if any(real.is_relative_to(store.resolve()) for store in stores):
        raise Conflict(
            f"{path} is in vdc's own store (instances and volumes are overlays on its images): "
            "prepare the original file and register that"
        )
    _refuse_read_only(path, real)
    info = disk_images.inspect(real, settings.qemu_img)
    disk_images.refuse_if_in_use(real, info.format)
    return info


def _refuse_read_only(path: Path, real: Path) -> None:
    # Root may write to a file whose mode says read-only: that mode is still the owner's
    # word that the file must not change.
    if not real.stat().st_mode & 0o222:
        raise BadRequest(
            f"{path} is read-only (mode {real.stat().st_mode & 0o777:o}): image prepare "
            "changes it in place; work on a writable copy"
        )
    try:
        os.close(os.open(real, os.O_RDWR))
    except OSError as exc:
        raise BadRequest(f"{path} cannot be opened for writing: {exc.strerror}") from None


def converted_path(path: Path, fmt: str) -> Path:
    """Where --convert writes: beside the image, named for the new format."""
    return path.with_suffix(f".{fmt}")


# --- inside the appliance -------------------------------------------------------------


def prepare(
    settings: Settings, path: Path, options: PrepareOptions, info: DiskInfo
) -> PrepareReport:
    """Makes every tweak in one appliance session; `check_image` must have passed."""
    options.check()
    report = PrepareReport(path=path, info=info)
    with session(path.resolve(), info.format, settings.virt_type) as fish:
        # First read-only: every refusal below leaves the file exactly as it was.
        report.operating_system = mount_linux_root(fish, path, read_only=True)
        install_init = options.install_init and not (
            options.unless_cloud_init and image_checks.look(fish).cloud_init == "enabled"
        )
        if options.install_init and not install_init:
            report.notes.append("cloud-init reads the metadata service: vdc-init not added")
        if options.init_user is not None:
            vdc_init_install.check_user(fish, options.init_user)
        if install_init:
            facts = image_checks.check_for_vdc_init(fish)
            report.notes.append(f"vdc-init will use {facts.http}, started by {facts.init}")
        else:
            facts = image_checks.look(fish)
        report.notes += facts.notes
        report.warnings += facts.warnings
        fish.call("umount-all")
        mount_linux_root(fish, path)
        report.changes += clear_persistent_net(fish)
        report.changes += clear_hwaddr(fish)
        report.changes += remove_ssh_host_keys(fish)
        report.changes += load_acpiphp_at_boot(fish, report.notes)
        report.changes += empty_logs(fish)
        for server in options.nameservers:
            report.changes += add_nameserver(fish, server)
        if install_init:
            report.changes += vdc_init_install.install_vdc_init(fish, options.init_user)
    return report


def mount_linux_root(fish: GuestFish, path: Path, read_only: bool = False) -> str:
    """Mounts the one Linux installation found, as its fstab says; returns its name."""
    mount = "mount-ro" if read_only else "mount"
    roots = fish.lines("inspect-os")
    if not roots:
        raise InvalidImage(
            f"{path.name}: no recognisable Linux in it (libguestfs found no operating system)"
        )
    kinds = {root: fish.call("inspect-get-type", root).strip() for root in roots}
    linux = [root for root, kind in kinds.items() if kind == "linux"]
    if not linux:
        found = ", ".join(sorted(set(kinds.values())))
        raise InvalidImage(f"{path.name}: no recognisable Linux in it (found: {found})")
    if len(linux) > 1:
        raise InvalidImage(f"{path.name} holds {len(linux)} Linux installations: which one?")
    root = linux[0]
    filesystems = dict(
        line.split(": ", 1) for line in fish.lines("list-filesystems") if ": " in line
    )
    mounts = [line.split(": ", 1) for line in fish.lines("inspect-get-mountpoints", root)]
    fish.call(mount, root, "/")
    for mountpoint, device in sorted(mounts, key=lambda pair: len(pair[0])):
        # fstab may name devices that are not in this image (a swap file, /dev/vdb...).
        usable = filesystems.get(device, "swap") not in ("swap", "unknown")
        if mountpoint != "/" and usable and fish.is_dir(mountpoint):
            fish.call(mount, device, mountpoint)
    product = fish.call("inspect-get-product-name", root).strip()  # Debian's is "12.5"
    distro = fish.call("inspect-get-distro", root).strip()
    if product == "unknown":
        product = "Linux" if distro == "unknown" else distro
    elif distro != "unknown" and distro.lower() not in product.lower():
        product = f"{distro} {product}"
    return f"{product} (root {root})"


def clear_persistent_net(fish: GuestFish) -> list[str]:
    """Old udev wrote the first MAC it saw into a rule: an instance's new MAC would become
    eth1, with no network. The rule goes and a /dev/null link stops udev writing it again."""
    rules = "/etc/udev/rules.d"
    if not fish.is_dir(rules):
        return []
    changes = []
    mask = f"{rules}/70-persistent-net.rules"
    for rule in fish.lines("glob-expand", f"{rules}/*persistent-net*.rules"):
        if rule == mask and _links_to_null(fish, rule):
            continue
        fish.call("rm-f", rule)
        changes.append(f"removed {rule} (it ties interface names to MAC addresses)")
    if not _links_to_null(fish, mask):
        fish.call("ln-sf", "/dev/null", mask)
        changes.append(f"linked {mask} to /dev/null (udev will not write it again)")
    return changes


def _links_to_null(fish: GuestFish, path: str) -> bool:
    return fish.is_symlink(path) and fish.call("readlink", path).strip() == "/dev/null"


def clear_hwaddr(fish: GuestFish) -> list[str]:
    changes = []
    for pattern in ("/etc/sysconfig/network-scripts/ifcfg-*", "/etc/sysconfig/network/ifcfg-*"):
        for path in fish.lines("glob-expand", pattern):
            if not fish.is_file(path):
                continue
            text, count = guest_edits.comment_out_hwaddr(fish.read_text(path))
            if count:
                fish.write_text(path, text)
                changes.append(f"commented out HWADDR= in {path}")
    return changes


def remove_ssh_host_keys(fish: GuestFish) -> list[str]:
    keys = fish.lines("glob-expand", "/etc/ssh/ssh_host_*")
    for key in keys:
        fish.call("rm-f", key)
    if not keys:
        return []
    names = ", ".join(key.rsplit("/", 1)[1] for key in keys)
    return [f"removed SSH host keys from /etc/ssh: {names}"]


def load_acpiphp_at_boot(fish: GuestFish, notes: list[str]) -> list[str]:
    """Volumes are hot-plugged through ACPI PCI hotplug, which the guest's acpiphp serves."""
    kernels = fish.lines("glob-expand", "/lib/modules/*/modules.builtin")
    if kernels and all(guest_edits.is_builtin(fish.read_text(path), "acpiphp") for path in kernels):
        notes.append("acpiphp is built into the image's kernel: nothing to load")
        return []
    if fish.is_file("/etc/modules"):
        target, text = "/etc/modules", fish.read_text("/etc/modules")
    elif fish.is_dir("/etc/modules-load.d"):
        target = "/etc/modules-load.d/acpiphp.conf"
        text = fish.read_text(target) if fish.is_file(target) else ""
    elif fish.is_dir("/etc/sysconfig/modules"):  # RHEL before systemd
        target = "/etc/sysconfig/modules/acpiphp.modules"
        if fish.is_file(target):
            return []
        fish.write_text(target, "#!/bin/sh\nexec /sbin/modprobe acpiphp\n", mode=0o755)
        return [f"created {target} (loads acpiphp at boot, for volume hot-attach)"]
    else:
        target, text = "/etc/modules", ""
    if guest_edits.lists_module(text, "acpiphp"):
        return []
    fish.write_text(target, guest_edits.with_line(text, "acpiphp") or text)
    return [f"added acpiphp to {target} (loaded at boot, for volume hot-attach)"]


def empty_logs(fish: GuestFish) -> list[str]:
    if not fish.is_dir("/var/log"):
        return []
    removed, emptied = [], []
    for path in fish.find("/var/log"):
        stat = fish.lstat(path)
        if not stat.is_regular:
            continue
        if guest_edits.log_disposal(path) == "remove":
            fish.call("rm", path)
            removed.append(path)
        elif stat.size:
            fish.call("truncate", path)
            emptied.append(path)
    changes = []
    if emptied:
        changes.append(f"emptied {len(emptied)} log file(s): {', '.join(emptied)}")
    if removed:
        changes.append(f"removed {len(removed)} old log file(s): {', '.join(removed)}")
    return changes


def add_nameserver(fish: GuestFish, server: str) -> list[str]:
    resolv = "/etc/resolv.conf"
    if fish.is_symlink(resolv) and not fish.is_file(resolv):
        # A link into /run: systemd-resolved or resolvconf writes the file at boot.
        if fish.is_dir("/etc/systemd"):
            target = f"/etc/systemd/resolved.conf.d/vdc-nameserver-{server}.conf"
            wanted = f"[Resolve]\nDNS={server}\n"
            if fish.is_file(target) and fish.read_text(target) == wanted:
                return []
            fish.call("mkdir-p", "/etc/systemd/resolved.conf.d")
            fish.write_text(target, wanted)
            return [f"added name server {server} to systemd-resolved ({target})"]
        fish.call("rm", resolv)
    text = fish.read_text(resolv) if fish.is_file(resolv) else ""
    updated = guest_edits.with_line(text, f"nameserver {server}")
    if updated is None:
        return []
    fish.write_text(resolv, updated)
    return [f"added nameserver {server} to {resolv}"]


# --- after the appliance ----------------------------------------------------------------


def convert(
    settings: Settings,
    path: Path,
    info: DiskInfo,
    fmt: str,
    progress: ProgressCallback | None = None,
) -> Path:
    """Writes the prepared image in another format beside it (never over a file)."""
    target = converted_path(path, fmt)
    if target.exists():
        raise Conflict(f"{target} exists already: move it away first")
    disk_images.convert(
        path.resolve(),
        info.format,
        info,
        target,
        fmt,
        settings.max_image_size,
        progress,
        settings.qemu_img,
        where=str(target.parent),
    )
    return target

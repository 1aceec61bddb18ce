"""What an image needs for vdc-init and for vdc's network, checked before `image prepare`
changes anything (the root is mounted read-only for these, so a refusal leaves the file
exactly as it was).

- vdc-init must be able to run: a shell, an HTTP client it knows (looked for as the
  script's own choose_http looks, in its order), and an init system that starts it
  (systemd, or an rc.local something runs). Missing any: prepare refuses.
- The first NIC must come up by DHCP (the seed's "use DHCP" rule): networkd, ifupdown,
  NetworkManager, netplan, RHEL's ifcfg files, a DHCP client in the boot scripts, or an
  enabled cloud-init. None found: a warning, since vdc cannot know every network setup.
- cloud-init: installed and enabled, it reads the metadata service too (a note); switched
  off by its marker file or on the kernel command line, it is said so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from app.errors import BadRequest
from app.services.images.guestfish import GuestFish

BOOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# vdc-init's choose_http, in its order: each choice and what must be there for it.
HTTP_CHOICES = (
    ("curl", ("curl",)),
    ("wget", ("wget",)),
    ("busybox-wget", ("busybox",)),
    ("python3", ("python3",)),
    ("bash", ("bash",)),
)
HTTP_NAMES = {
    "curl": "curl",
    "wget": "wget",
    "busybox-wget": "busybox wget",
    "python3": "python3 (urllib)",
    "bash": "bash (/dev/tcp, HTTP/1.0)",
}
_BOOT_CONFIGS = (
    "/etc/default/grub",
    "/boot/grub/grub.cfg",
    "/boot/grub2/grub.cfg",
    "/boot/extlinux/extlinux.conf",
    "/boot/syslinux/syslinux.cfg",
    "/etc/kernel/cmdline",
)


@dataclass
class ImageFacts:
    http: str = ""  # what vdc-init will use, as HTTP_NAMES says it
    init: str = ""  # "systemd" or the rc.local that will run it
    dhcp: str = ""  # what brings the first NIC up by DHCP ("" when nothing was found)
    cloud_init: str = ""  # "absent", "enabled" or how it is switched off
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check_for_vdc_init(fish: GuestFish) -> ImageFacts:
    """On the read-only root: refuses an image vdc-init could not work in (BadRequest)."""
    facts = look(fish)
    if not fish.exists("/bin/sh"):
        raise BadRequest("the image has no /bin/sh: vdc-init (a sh script) cannot run in it")
    if not facts.http:
        raise BadRequest(
            "the image has no curl, wget, busybox, python3 or bash: vdc-init could not reach "
            "the metadata service; install one of them (bash is enough) and prepare again"
        )
    if not facts.init:
        raise BadRequest(
            "the image has neither systemd nor an rc.local that its init runs: nothing would "
            "start vdc-init at boot"
        )
    return facts


def look(fish: GuestFish) -> ImageFacts:
    facts = ImageFacts(
        http=_http_client(fish),
        init=_init_system(fish),
        dhcp=_dhcp(fish),
        cloud_init=_cloud_init(fish),
    )
    if not facts.dhcp:
        facts.warnings.append(
            "found nothing that brings the first network interface up by DHCP "
            "(networkd, ifupdown, NetworkManager, netplan, ifcfg, cloud-init): vdc hands "
            "out addresses by DHCP only, so instances of this image may have no network"
        )
    if facts.cloud_init == "enabled":
        facts.notes.append("this image has cloud-init, which also reads the metadata service")
    elif facts.cloud_init != "absent":
        facts.notes.append(f"cloud-init is installed but switched off ({facts.cloud_init})")
    return facts


def _http_client(fish: GuestFish) -> str:
    """What vdc-init's choose_http will pick at boot, found by looking for the programs on
    the boot PATH (in the script's own order; a unit test keeps the two in step). Looked at,
    not run: the image's programs may be for another architecture than the appliance."""
    for choice, programs in HTTP_CHOICES:
        if any(_on_path(fish, program) for program in programs):
            return HTTP_NAMES[choice]
    return ""


def _on_path(fish: GuestFish, program: str) -> bool:
    if program.startswith("/"):  # a file that must be there (python3's urllib)
        return bool(_glob(fish, program))
    return any(fish.is_file(f"{folder}/{program}") for folder in BOOT_PATH.split(":"))


def _init_system(fish: GuestFish) -> str:
    systemd = fish.is_file("/lib/systemd/systemd") or fish.is_file("/usr/lib/systemd/systemd")
    if systemd and fish.is_dir("/etc/systemd/system"):
        return "systemd"
    for rc_local in ("/etc/rc.local", "/etc/rc.d/rc.local"):
        if fish.is_file(rc_local):
            return rc_local
    if fish.is_file("/etc/init.d/rc.local"):  # sysvinit runs /etc/rc.local once it exists
        return "/etc/rc.local (run by /etc/init.d/rc.local)"
    return ""


# What brings an interface up by DHCP: (what, files to look in, what they say when it does).
_DHCP_CONFIGS = (
    (
        "systemd-networkd",
        ("/etc/systemd/network/*.network", "/lib/systemd/network/*.network"),
        re.compile(r"^\s*DHCP\s*=\s*(yes|true|ipv4|both)", re.I | re.M),
    ),
    (
        "ifupdown",
        ("/etc/network/interfaces", "/etc/network/interfaces.d/*"),
        re.compile(r"^\s*iface\s+\S+\s+inet\s+dhcp", re.M),
    ),
    ("netplan", ("/etc/netplan/*.yaml", "/etc/netplan/*.yml"), re.compile(r"dhcp4:\s*(true|yes)")),
    (
        "ifcfg",
        ("/etc/sysconfig/network-scripts/ifcfg-*", "/etc/sysconfig/network/ifcfg-*"),
        re.compile(r"^\s*BOOTPROTO=['\"]?dhcp", re.I | re.M),
    ),
    (
        "a DHCP client started at boot",
        ("/etc/inittab", "/etc/rc.local", "/etc/init.d/*"),
        re.compile(r"\b(udhcpc|dhclient|dhcpcd)\b"),
    ),
)


def _dhcp(fish: GuestFish) -> str:
    for what, patterns, says in _DHCP_CONFIGS:
        for path in _glob(fish, *patterns):
            if fish.is_file(path) and says.search(fish.read_text(path)):
                return f"{what} ({path})"
    for binary in ("/usr/sbin/NetworkManager", "/usr/bin/NetworkManager"):
        if fish.is_file(binary):
            return "NetworkManager"
    if _cloud_init(fish) == "enabled":
        return "cloud-init"
    return ""


def _cloud_init(fish: GuestFish) -> str:
    if not (fish.is_file("/usr/bin/cloud-init") or fish.is_file("/usr/local/bin/cloud-init")):
        return "absent"
    if fish.exists("/etc/cloud/cloud-init.disabled"):
        return "/etc/cloud/cloud-init.disabled"
    for path in _BOOT_CONFIGS:
        if fish.is_file(path) and "cloud-init=disabled" in fish.read_text(path):
            return f"cloud-init=disabled on the kernel command line, in {path}"
    return "enabled"


def _glob(fish: GuestFish, *patterns: str) -> list[str]:
    return [path for pattern in patterns for path in fish.lines("glob-expand", pattern)]

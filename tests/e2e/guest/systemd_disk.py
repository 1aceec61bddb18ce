"""A minimal systemd guest disk: Debian bookworm as `debootstrap --variant=minbase` makes it,
plus systemd, udev, kmod and dbus, whose only way to talk HTTP is bash's /dev/tcp (no curl, no
wget, no busybox, no python3, no nc, no cloud-init). What a small systemd image brought to
`vdc-manage image prepare --install-init` looks like (issue 19).

    build_systemd_disk(cache_dir) -> Path of a pristine raw image (copy it before changing it)
    python -m tests.e2e.guest.systemd_disk CACHE_DIR      # prints that path

Layout (raw, MBR), as linux_disk.py's: partition 1 is FAT16 with syslinux, Debian's cloud
kernel and the same small busybox initramfs (linux/stage1.sh: loads the virtio drivers,
mounts root= and switch_roots to /sbin/init, here systemd; busybox stays in the
initramfs). Partition 2 is the ext4 root filesystem, made with `mkfs.ext4 -d` from the
debootstrap tree (nothing mounted for the disk; debootstrap itself mounts /proc and /sys in
its tree while it installs, inside a mount namespace of its own here). In the tree:

- the kernel's modules (from the same package as the kernel, `dpkg -x`ed, depmod run), so
  udev loads what the guest's devices need;
- systemd-networkd: DHCP on the first NIC (`net.ifnames=0`, so eth0), enabled with
  systemd-networkd-wait-online (vdc-init's unit waits for network-online.target);
- an empty /etc/machine-id (each instance makes its own), hostname `vdc-systemd`;
- no getty on the serial console (systemd's status lines go on there to the end of the
  boot: `Reached target multi-user.target`);
- vdc-e2e-report.service, after vdc-init.service (which image prepare installs): prints
  the guest's own view on the console (REPORT below) and `VDC-E2E ready`.

The file is `CACHE_DIR/vdc-e2e-systemd-<hash>.raw`, the hash covering this file,
linux/stage1.sh, the kernel, busybox and syslinux versions (as build.py's) and the
versions apt has of the packages named in HASHED_PACKAGES; older ones are removed after a
new build. debootstrap's downloads are kept in `CACHE_DIR/debootstrap-debs`, so a rebuild
downloads only what changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from tests.e2e.guest import build, linux_disk
from tests.e2e.guest.build import BuildError, Inputs

PREFIX = "vdc-e2e-systemd-"
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# Added to minbase: systemd as init, udev (networkd waits for udev to set links up), kmod
# (modprobe@ and kmod-static-nodes units), dbus (logind needs it, and logind turns the ACPI
# power button into a clean poweroff).
INCLUDE = ("systemd", "systemd-sysv", "udev", "kmod", "dbus")
# Must not be in the image: its only HTTP client is bash.
ABSENT = ("curl", "wget", "busybox", "python3", "nc", "cloud-init")
# Their versions (as apt knows them here) go into the cache key.
HASHED_PACKAGES = (*INCLUDE, "bash", "libc6", "base-files", "debootstrap")
HOSTNAME = "vdc-systemd"

BOOT_START, BOOT_SECTORS = linux_disk.BOOT_START, linux_disk.BOOT_SECTORS
ROOT_START = linux_disk.ROOT_START  # 25 MiB
SECTOR = build.SECTOR
ROOT_SPARE_MIB = 256  # free room in the root filesystem (journal, logs, user-data)
KERNEL_CMDLINE = (
    "console=ttyS0,115200 root=/dev/vda2 rw net.ifnames=0 systemd.show_status=1 quiet panic=-1"
)
SYSLINUX_CFG = linux_disk.SYSLINUX_CFG.replace(linux_disk.KERNEL_CMDLINE, KERNEL_CMDLINE)

# The guest's own report, on the console once vdc-init has run (or failed, or is absent):
#   VDC-E2E report hostname=<hostname> addresses=<hostname -I, comma-separated, or ->
#   VDC-E2E report tools=<those of ABSENT found on PATH, or ->
#   VDC-E2E report http=<vdc-init --which-http, or ->
#   VDC-E2E report vdc-init=<systemctl is-active vdc-init: active, failed, inactive...>
#   VDC-E2E report key <each line of /root/.ssh/authorized_keys>
#   VDC-E2E report user-data <each line of /var/tmp/user-data-proof>
#   VDC-E2E ready
REPORT = """\
#!/bin/sh
# vdc-e2e-report: what the e2e tests check, as this guest sees it, on the console.
tools=
for tool in curl wget busybox python3 nc cloud-init; do
	if command -v "$tool" >/dev/null 2>&1; then tools="$tools${tools:+,}$tool"; fi
done
http=$(/usr/local/sbin/vdc-init --which-http 2>/dev/null) || http=-
# shellcheck disable=SC2046 # one word per address
set -- $(hostname -I)
addresses=$(IFS=,; echo "$*")
echo "VDC-E2E report hostname=$(hostname) addresses=${addresses:--}"
echo "VDC-E2E report tools=${tools:--}"
echo "VDC-E2E report http=${http:--}"
echo "VDC-E2E report vdc-init=$(systemctl is-active vdc-init.service)"
if [ -r /root/.ssh/authorized_keys ]; then
	sed 's/^/VDC-E2E report key /' /root/.ssh/authorized_keys
fi
if [ -r /var/tmp/user-data-proof ]; then
	sed 's/^/VDC-E2E report user-data /' /var/tmp/user-data-proof
fi
echo "VDC-E2E ready"
"""
REPORT_UNIT = """\
[Unit]
Description=vdc e2e: report the guest's own view on the console
Wants=network-online.target
After=network-online.target vdc-init.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/vdc-e2e-report
RemainAfterExit=yes
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
"""
FILES = {
    "etc/hostname": f"{HOSTNAME}\n",
    "etc/hosts": f"127.0.0.1 localhost\n127.0.1.1 {HOSTNAME}\n",
    "etc/fstab": "/dev/vda2 / ext4 defaults,errors=remount-ro 0 1\n",
    "etc/machine-id": "",
    "etc/systemd/network/10-vdc-dhcp.network": "[Match]\nName=eth0\n\n[Network]\nDHCP=yes\n",
    "etc/systemd/system/vdc-e2e-report.service": REPORT_UNIT,
}
EXECUTABLES = {"usr/local/sbin/vdc-e2e-report": REPORT}
ENABLED = ("systemd-networkd.service", "vdc-e2e-report.service")
# No login prompt on the serial console: nobody logs in (root has no password), and
# systemd stops printing its status lines there once a getty holds it.
MASKED = ("serial-getty@ttyS0.service",)


def mirror() -> str:
    """The Debian mirror apt uses here (deb822 or one-line sources), else deb.debian.org."""
    sources = Path("/etc/apt/sources.list.d")
    for path in sorted(sources.glob("*.sources")) if sources.is_dir() else []:
        for stanza in path.read_text().split("\n\n"):
            fields = dict(
                line.split(":", 1) for line in stanza.splitlines() if ":" in line and line[0] != "#"
            )
            suites = fields.get("Suites", "").split()
            if SUITE in suites and "deb" in fields.get("Types", "").split():
                return fields["URIs"].split()[0].rstrip("/")
    for path in [Path("/etc/apt/sources.list"), *sorted(sources.glob("*.list"))]:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            words = line.split()
            if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                return words[1].rstrip("/")
    return DEFAULT_MIRROR


def cache_key(inputs: Inputs, versions: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for source in (Path(__file__).resolve(), linux_disk.STAGE1):
        digest.update(source.read_bytes())
    digest.update(json.dumps([asdict(inputs), versions, mirror()], sort_keys=True).encode())
    return digest.hexdigest()[:16]


def build_systemd_disk(cache_dir: Path) -> Path:
    """The path of the raw disk in cache_dir, built first if needed (as root)."""
    cache_dir = cache_dir.resolve()
    cache_dir.mkdir(parents=True, exist_ok=True)
    with build._locked(cache_dir / ".systemd-build.lock"):
        inputs = build.resolve_inputs()
        versions = build._candidate_versions(HASHED_PACKAGES)
        image = cache_dir / f"{PREFIX}{cache_key(inputs, versions)}.raw"
        if image.exists():
            return image
        build._log(f"building {image.name} (debootstrap {SUITE} minbase from {mirror()})")
        build.ensure_packages([*build.BUILD_TOOLS, "e2fsprogs", "debootstrap", "kmod"])
        debs = cache_dir / "debootstrap-debs"
        debs.mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".systemd-build-") as tmp:
            os.replace(_build(Path(tmp), inputs, debs), image)
        for old in cache_dir.glob(f"{PREFIX}*.raw"):
            if old != image:
                old.unlink(missing_ok=True)
        return image


def _build(workdir: Path, inputs: Inputs, debs: Path) -> Path:
    kernel_tree = build._download_and_extract(inputs.kernel_package, inputs.kernel_version, workdir)
    busybox_tree = build._download_and_extract(
        build.BUSYBOX_PACKAGE, inputs.busybox_version, workdir
    )
    vmlinuz = next(iter(sorted((kernel_tree / "boot").glob("vmlinuz-*"))))
    release = vmlinuz.name.removeprefix("vmlinuz-")
    modules_dir = next(
        d
        for d in (kernel_tree / lib / "modules" / release for lib in ("lib", "usr/lib"))
        if d.is_dir()
    )

    root = workdir / "root"
    _debootstrap(root, debs)
    _configure(root, modules_dir, release)

    boot = workdir / "boot"
    boot.mkdir()
    (boot / "initrd").write_bytes(linux_disk._initramfs(busybox_tree / "bin/busybox", modules_dir))
    (boot / "syslinux.cfg").write_text(SYSLINUX_CFG)

    root_mib = _tree_mib(root) + ROOT_SPARE_MIB
    disk_mib = ROOT_START // 2048 + root_mib
    raw = workdir / "disk.raw"
    with raw.open("wb") as f:
        f.truncate(disk_mib * 1024 * 1024)
    build._run(
        ["sfdisk", "--no-reread", "--no-tell-kernel", "-q", raw],
        input_text=(
            "label: dos\n"
            f"start={BOOT_START}, size={BOOT_SECTORS}, type=6, bootable\n"
            f"start={ROOT_START}, type=83\n"
        ),
    )
    build._run(
        ["mkfs.fat", "-F", "16", "-n", "VDCBOOT", "-h", str(BOOT_START),
         "--offset", str(BOOT_START), raw, str(BOOT_SECTORS * SECTOR // 1024)]
    )  # fmt: skip
    build._run(["syslinux", "--offset", str(BOOT_START * SECTOR), "--install", raw])
    build._run(["dd", f"if={build.MBR_BIN}", f"of={raw}", "bs=440", "count=1", "conv=notrunc"])
    for source, target in ((vmlinuz, "vmlinuz"), (boot / "initrd", "initrd"),
                           (boot / "syslinux.cfg", "syslinux.cfg")):  # fmt: skip
        build._run(
            ["mcopy", "-o", "-i", f"{raw}@@{BOOT_START * SECTOR}", source, f"::{target}"],
            env={"MTOOLS_SKIP_CHECK": "1"},
        )
    rootfs = workdir / "rootfs.ext4"
    build._run(["mkfs.ext4", "-q", "-F", "-L", "vdcroot", "-d", root, rootfs, f"{root_mib}M"])
    build._run(
        ["dd", f"if={rootfs}", f"of={raw}", "bs=1M", f"seek={ROOT_START // 2048}",
         "conv=notrunc,sparse"]
    )  # fmt: skip
    return raw


def _debootstrap(root: Path, debs: Path) -> None:
    """minbase + INCLUDE into root. debootstrap mounts /proc and /sys in root while it
    installs: a private mount namespace keeps those mounts (and any it leaves) off the host."""
    begin = time.monotonic()
    build._run(
        ["unshare", "--mount", "--propagation", "private", "--",
         "debootstrap", "--variant=minbase", f"--include={','.join(INCLUDE)}",
         f"--cache-dir={debs}", SUITE, root, mirror()]
    )  # fmt: skip
    build._log(f"debootstrap took {time.monotonic() - begin:.0f} s")
    found = [
        f"{folder}/{tool}"
        for tool in ABSENT
        for folder in ("usr/bin", "usr/sbin", "usr/local/bin", "usr/local/sbin")
        if (root / folder / tool).exists()
    ]
    if found:
        raise BuildError(f"the minimal guest must not have {', '.join(found)}")
    if not (root / "usr/bin/bash").exists() or not (root / "lib/systemd/systemd").exists():
        raise BuildError("debootstrap made a tree without bash or systemd")


def _configure(root: Path, modules_dir: Path, release: str) -> None:
    target = root / "usr/lib/modules" / release
    shutil.copytree(modules_dir, target, symlinks=True)
    build._run(["depmod", "-b", root, release])
    for name, text in FILES.items():
        _write(root / name, text, 0o644)
    for name, text in EXECUTABLES.items():
        _write(root / name, text, 0o755)
    # The guest's own systemctl, offline: enabling only makes links.
    build._run(["chroot", root, "systemctl", "enable", "--quiet", *ENABLED])
    build._run(["chroot", root, "systemctl", "mask", "--quiet", *MASKED])
    # What debootstrap leaves that an image needs not carry.
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True)
    for lists in (root / "var/lib/apt/lists").glob("*_dists_*"):
        lists.unlink()
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)


def _tree_mib(root: Path) -> int:
    used = build._run(["du", "-s", "--block-size=1M", "-x", root]).split()[0]
    return int(int(used) * 1.1) + 1


def _write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.e2e.guest.systemd_disk CACHE_DIR", file=sys.stderr)
        return 2
    begin = time.monotonic()
    try:
        image = build_systemd_disk(Path(argv[0]))
    except (build.BuildError, subprocess.CalledProcessError) as exc:
        print(f"systemd-disk: {exc}", file=sys.stderr)
        return 1
    build._log(f"{image.name}: {time.monotonic() - begin:.1f} s")
    print(image)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

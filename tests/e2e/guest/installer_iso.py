"""Build the e2e tests' installer CD: a tiny ISO that installs the test guest onto a blank
disk and powers off, as an OS installer does (issue 17: install from an ISO, capture).

    build_installer_iso(cache_dir) -> Path of the ISO
    python tests/e2e/guest/installer_iso.py CACHE_DIR     # prints that path

Everything in it comes from the test guest's own disk (build.py, built first if needed):
its kernel boots the CD, its busybox and virtio modules make the installer's initramfs
(whose /init is installer_init.sh), and its boot partition, taken whole (syslinux, kernel,
the guest's initramfs), is what the installer writes onto the disk, with the boot code of
its MBR. No package is downloaded beyond the CD's own tools (xorriso; isolinux boots it).

The file name carries a hash of this file, installer_init.sh and the guest image's name
(itself a hash of what went into the guest): the ISO is built again only when one of them
changed, and older ones are removed. Nothing is mounted.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tests.e2e.guest.build import (
    PARTITION_START_SECTOR,
    SECTOR,
    BuildError,
    Cpio,
    _locked,  # the same lock file discipline as the guest's build
    build_image,
    ensure_packages,
)

HERE = Path(__file__).resolve().parent
INSTALLER_INIT = HERE / "installer_init.sh"
ISO_PREFIX = "vdc-e2e-installer-"
# The CD's boot loader: isolinux (El Torito, no emulation) and the module it needs.
ISOLINUX_BIN = Path("/usr/lib/ISOLINUX/isolinux.bin")
LDLINUX_C32 = Path("/usr/lib/syslinux/modules/bios/ldlinux.c32")
TOOLS = ("xorriso", "isolinux", "syslinux-common", "mtools", "qemu-utils")
KERNEL_CMDLINE = "console=tty0 console=ttyS0,115200 quiet panic=-1"
ISOLINUX_CFG = f"""\
DEFAULT install
PROMPT 0
TIMEOUT 0
LABEL install
  KERNEL /vmlinuz
  INITRD /initrd
  APPEND {KERNEL_CMDLINE}
"""
MBR_BOOT_CODE = 440  # bytes of an MBR before its disk signature and partition table


def build_installer_iso(cache_dir: Path) -> Path:
    """The installer ISO in cache_dir, built first if needed (after the test guest)."""
    cache_dir = cache_dir.resolve()
    guest = build_image(cache_dir)
    digest = hashlib.sha256()
    for source in (Path(__file__).resolve(), INSTALLER_INIT):
        digest.update(source.read_bytes())
    digest.update(guest.name.encode())
    iso = cache_dir / f"{ISO_PREFIX}{digest.hexdigest()[:16]}.iso"
    if iso.exists():
        return iso
    with _locked(cache_dir / ".installer-build.lock"):  # other e2e sessions may build it too
        if iso.exists():
            return iso
        ensure_packages(TOOLS)
        with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".installer-build-") as tmp:
            built = _build(Path(tmp), guest)
            os.replace(built, iso)
        for old in cache_dir.glob(f"{ISO_PREFIX}*.iso"):
            if old != iso:
                old.unlink(missing_ok=True)
    return iso


def _build(workdir: Path, guest: Path) -> Path:
    raw = workdir / "guest.raw"
    _run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", guest, raw])
    disk = raw.read_bytes()
    partition = disk[PARTITION_START_SECTOR * SECTOR :]  # the guest's one partition, whole
    tree = workdir / "cd"
    (tree / "isolinux").mkdir(parents=True)
    mtools = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    for name in ("vmlinuz", "initrd"):
        _run(["mcopy", "-i", f"{raw}@@1M", f"::{name}", workdir / name], env=mtools)
    (tree / "vmlinuz").write_bytes((workdir / "vmlinuz").read_bytes())
    guest_files = read_cpio(gzip.decompress((workdir / "initrd").read_bytes()))
    (tree / "initrd").write_bytes(
        _installer_initramfs(guest_files, disk[:MBR_BOOT_CODE], partition)
    )
    (tree / "isolinux" / "isolinux.bin").write_bytes(ISOLINUX_BIN.read_bytes())
    (tree / "isolinux" / "ldlinux.c32").write_bytes(LDLINUX_C32.read_bytes())
    (tree / "isolinux" / "isolinux.cfg").write_text(ISOLINUX_CFG)
    iso = workdir / "installer.iso"
    _run(
        ["xorriso", "-as", "mkisofs", "-quiet", "-V", "VDC_E2E_INSTALLER", "-o", iso,
         "-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat",
         "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table", tree]
    )  # fmt: skip
    return iso


def _installer_initramfs(guest: dict[str, bytes], mbr: bytes, partition: bytes) -> bytes:
    """busybox and the virtio modules of the guest's initramfs, the installer's /init, and
    what it writes: the MBR's boot code and the boot partition (gzip'd, and its size)."""
    cpio = Cpio()
    for directory in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys",
                      "tmp", "run", "etc", "lib", "lib/modules"):  # fmt: skip
        cpio.directory(directory)
    cpio.char_device("dev/console", 5, 1)
    cpio.file("bin/busybox", guest["bin/busybox"], 0o755)
    cpio.symlink("bin/sh", "busybox")
    cpio.file("init", INSTALLER_INIT.read_bytes(), 0o755)
    cpio.file("etc/modules", guest["etc/modules"])
    for name, data in guest.items():
        if name.startswith("lib/modules/") and name.endswith(".ko"):
            cpio.file(name, data)
    cpio.file("mbr.bin", mbr)
    cpio.file("boot.img.gz", gzip.compress(partition, 6))
    cpio.file("boot.sectors", f"{len(partition) // SECTOR}\n".encode())
    return gzip.compress(cpio.finish(), compresslevel=6, mtime=0)


def read_cpio(archive: bytes) -> dict[str, bytes]:
    """name -> content of the regular files of a newc cpio archive (build.py's Cpio)."""
    files: dict[str, bytes] = {}
    offset = 0
    while True:
        header = archive[offset : offset + 110]
        if header[:6] != b"070701":
            raise BuildError(f"not a newc cpio entry at byte {offset}")
        fields = [int(header[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        mode, size, name_size = fields[1], fields[6], fields[11]
        name_start = offset + 110
        name = archive[name_start : name_start + name_size - 1].decode()
        data_start = _aligned(name_start + name_size)
        if name == "TRAILER!!!":
            return files
        if mode & 0o170000 == 0o100000:
            files[name] = archive[data_start : data_start + size]
        offset = _aligned(data_start + size)


def _aligned(offset: int) -> int:
    return offset + (-offset % 4)


def _run(args: Sequence[str | Path], env: dict[str, str] | None = None) -> None:
    argv = [str(a) for a in args]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BuildError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr.strip()}")


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        print("usage: installer_iso.py CACHE_DIR", file=sys.stderr)
        return 2
    try:
        print(build_installer_iso(Path(argv[0])))
    except BuildError as e:
        print(f"installer-build: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

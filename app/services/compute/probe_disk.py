"""The KVM probe guest's disk (hypervisor/kvm_probe.py): 4 MiB, one FAT partition with
syslinux, whose configuration prints a prompt on the serial port and waits there. Built on
the control host from Debian's syslinux, mtools, dosfstools and fdisk (no mounting), once,
and kept in the data dir; hosts get it like any image."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from app.config import Settings
from app.errors import AppError
from app.services.compute.fat_image import run_tool

NAME = "vdc-kvm-probe.raw"
SIZE = 4 * 1024 * 1024
START_SECTOR = 2048  # the partition starts at 1 MiB
MBR = Path("/usr/lib/syslinux/mbr/mbr.bin")
TOOLS = ("sfdisk", "mkfs.fat", "syslinux", "mcopy")
SYSLINUX_CFG = "SERIAL 0 115200\nPROMPT 1\nTIMEOUT 0\nDEFAULT vdc-probe\n"


class ProbeDiskError(AppError):
    status_code = 500
    type = "probe_disk_error"


def probe_disk(settings: Settings) -> Path:
    """The disk's path, built on first use."""
    disk = settings.data_dir / NAME
    if disk.is_file():
        return disk
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing or not MBR.is_file():
        raise ProbeDiskError(
            f"cannot build the KVM probe disk: {', '.join(missing) or str(MBR)} missing "
            "(Debian: syslinux syslinux-common mtools dosfstools fdisk)"
        )
    partial = disk.with_name(f".{NAME}.{os.getpid()}")
    try:
        _build(partial)
        partial.chmod(0o644)  # qemu, as its own user, reads it on this host
        partial.replace(disk)
    finally:
        partial.unlink(missing_ok=True)
    return disk


def _build(raw: Path) -> None:
    with raw.open("wb") as out:
        out.truncate(SIZE)
    _run(["sfdisk", "--no-reread", "--no-tell-kernel", "-q", str(raw)],
         stdin=f"label: dos\nstart={START_SECTOR}, type=1, bootable\n")  # fmt: skip
    fs_kib = (SIZE - START_SECTOR * 512) // 1024
    _run(["mkfs.fat", "-F", "12", "-n", "VDCPROBE", "-h", str(START_SECTOR),
          "--offset", str(START_SECTOR), str(raw), str(fs_kib)])  # fmt: skip
    _run(["syslinux", "--offset", str(START_SECTOR * 512), "--install", str(raw)])
    with raw.open("r+b") as out:
        out.write(MBR.read_bytes()[:440])  # the MBR boot code, before the partition table
    config = raw.with_name(raw.name + ".cfg")
    config.write_text(SYSLINUX_CFG)
    try:
        _run(["mcopy", "-o", "-i", f"{raw}@@{START_SECTOR * 512}", str(config), "::syslinux.cfg"],
             env={"MTOOLS_SKIP_CHECK": "1"})  # fmt: skip
    finally:
        config.unlink(missing_ok=True)


def _run(args: list[str], stdin: str | None = None, env: dict[str, str] | None = None) -> None:
    failed = run_tool(args, stdin, env)
    if failed:
        raise ProbeDiskError(f"building the KVM probe disk: {failed}")

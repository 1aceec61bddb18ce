"""A small disk image with an MBR and one FAT partition holding given files, made without
mounting anything (the KVM probe disk's approach, probe_disk.py): sfdisk writes the
partition table, mkfs.fat the filesystem at the partition's offset, and mtools' mcopy the
files, from Debian's fdisk, dosfstools and mtools."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from app.errors import AppError

START_SECTOR = 2048  # the partition starts at 1 MiB, as partitioning tools align it
SECTOR = 512
TOOLS = ("sfdisk", "mkfs.fat", "mcopy")


class FatImageError(AppError):
    status_code = 500
    type = "fat_image_error"


def build_fat_image(
    image: Path, files: dict[str, bytes], label: str, size: int, volume_id: str
) -> None:
    """Writes `image` (raw, `size` bytes, sparse): partition 1 is FAT16 named `label` with
    serial `volume_id` (8 hex digits) and `files` (relative path -> bytes) in it."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        raise FatImageError(
            f"cannot build a FAT disk: {', '.join(missing)} missing "
            "(Debian: fdisk dosfstools mtools)"
        )
    with image.open("wb") as out:
        out.truncate(size)
    # Type e: FAT16 with LBA. Linux reads the filesystem whatever the type says.
    _run(["sfdisk", "--no-reread", "--no-tell-kernel", "-q", str(image)],
         stdin=f"label: dos\nstart={START_SECTOR}, type=e\n")  # fmt: skip
    fs_kib = (size - START_SECTOR * SECTOR) // 1024
    _run(["mkfs.fat", "-F", "16", "-n", label, "-i", volume_id, "-h", str(START_SECTOR),
          "--offset", str(START_SECTOR), str(image), str(fs_kib)])  # fmt: skip
    if not files:
        return
    # The files go in as one tree, by one mcopy: a folder laid out as on the disk.
    with tempfile.TemporaryDirectory(dir=image.parent, prefix=".fat-") as staging:
        root = Path(staging)
        for name, data in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        tops = sorted({name.split("/", 1)[0] for name in files})
        _run(["mcopy", "-s", "-Q", "-i", f"{image}@@{START_SECTOR * SECTOR}",
              *(str(root / top) for top in tops), "::/"],
             env={"MTOOLS_SKIP_CHECK": "1"})  # fmt: skip


def _run(args: list[str], stdin: str | None = None, env: dict[str, str] | None = None) -> None:
    failed = run_tool(args, stdin, env)
    if failed:
        raise FatImageError(f"building a FAT disk: {failed}")


def run_tool(args: list[str], stdin: str | None = None, env: dict[str, str] | None = None) -> str:
    """Runs one disk tool (sfdisk, mkfs.fat, mtools, syslinux); "" when it succeeded, else
    "TOOL: its error output" for the caller's own error."""
    result = subprocess.run(  # noqa: S603 - an argument list of vdc's own
        args,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )
    return "" if result.returncode == 0 else f"{args[0]}: {result.stderr.strip()}"

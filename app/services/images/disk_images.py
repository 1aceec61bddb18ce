"""Looking at and converting disk image files with qemu-img, treating every file as hostile.

Nothing here touches the database. Every subprocess gets an argument list (never a shell),
runs under resource limits, and is given absolute paths only.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.errors import Conflict, InvalidImage, PayloadTooLarge
from app.services.images import free_space

# Formats KVM (QEMU) boots from; anything else qemu-img might recognise is refused.
BOOTABLE_FORMATS = frozenset(
    {"raw", "qcow2", "qcow", "qed", "vmdk", "vdi", "vhdx", "vpc", "parallels"}
)
CONVERSION_TARGETS = frozenset({"qcow2", "raw"})

# A "raw" image is just bytes, so qemu-img calls any file raw; these magics say it is
# something else that the operator most likely meant to unpack first.
_NOT_DISK_MAGIC = {
    b"\x1f\x8b": "a gzip archive",
    b"\xfd7zXZ\x00": "an xz archive",
    b"BZh": "a bzip2 archive",
    b"PK\x03\x04": "a zip archive",
    b"\x28\xb5\x2f\xfd": "a zstd archive",
    b"\x7fELF": "an executable (ELF)",
    b"#!": "a script",
}
SECTOR = 512
# ISO 9660: the primary volume descriptor (sector 16 of 2048 bytes) is a type byte, then
# "CD001". qemu-img knows no ISO format: to it an installer CD is raw.
ISO_MAGIC = b"CD001"
ISO_MAGIC_OFFSET = 0x8001
_CHUNK = 4 * 1024 * 1024
# Limits from OpenStack's hardening of `qemu-img info` against crafted images.
_INFO_LIMITS = ["prlimit", "--as=1073741824", "--cpu=30", "--"]

ProgressCallback = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass(frozen=True)
class DiskInfo:
    format: str
    virtual_size: int
    file_size: int
    kind: str = "disk"  # or "iso": an installer CD (raw bytes with an ISO 9660 signature)


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - argument list, no shell
        args,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "LC_ALL": "C"},
    )


def inspect(path: Path, qemu_img: str = "qemu-img") -> DiskInfo:
    """Reads format and size from qemu-img and refuses anything unsafe or not a disk."""
    if not path.is_absolute():
        raise ValueError("inspect() needs an absolute path")
    file_size = path.stat().st_size
    if file_size == 0:
        raise InvalidImage(f"{path.name} is empty")
    prefix = _INFO_LIMITS if shutil.which("prlimit") else []
    try:
        result = _run([*prefix, qemu_img, "info", "--output=json", str(path)], timeout=60)
    except subprocess.TimeoutExpired as exc:
        raise InvalidImage(f"{path.name}: qemu-img took too long to read it") from exc
    if result.returncode != 0:
        _refuse_if_locked(path, result.stderr)
        reason = result.stderr.strip().splitlines()[-1:] or ["unreadable"]
        raise InvalidImage(f"{path.name} is not a disk image qemu can read: {reason[0]}")
    info = json.loads(result.stdout)
    fmt = info.get("format", "")
    if fmt not in BOOTABLE_FORMATS:
        raise InvalidImage(f"{path.name}: format {fmt!r} is not one KVM boots from")
    _refuse_external_references(path, info)
    if fmt == "raw":
        _refuse_non_disk_raw(path, file_size)
    virtual_size = int(info.get("virtual-size") or 0)
    if virtual_size <= 0:
        raise InvalidImage(f"{path.name}: virtual size is zero")
    kind = "iso" if fmt == "raw" and is_iso(path) else "disk"
    return DiskInfo(format=fmt, virtual_size=virtual_size, file_size=file_size, kind=kind)


def is_iso(path: Path) -> bool:
    """An ISO 9660 file (an installer CD, hybrid ones included: those also have an MBR)."""
    with path.open("rb") as handle:
        handle.seek(ISO_MAGIC_OFFSET)
        return handle.read(len(ISO_MAGIC)) == ISO_MAGIC


def refuse_if_in_use(path: Path, fmt: str, qemu_io: str = "qemu-io") -> None:
    """Refuses an image some process has open (a VM, even one using it read-only as a backing
    file): qemu-io asks for the write lock qemu's users hold, changing nothing.

    Call it after `inspect`, which has refused backing and data files: qemu-io opens those too.
    """
    prefix = _INFO_LIMITS if shutil.which("prlimit") else []
    args = [*prefix, qemu_io, "-f", fmt, "-c", "quit", str(path)]
    try:
        result = _run(args, timeout=60)
    except subprocess.TimeoutExpired as exc:
        raise InvalidImage(f"{path.name}: qemu-io took too long to open it") from exc
    if result.returncode != 0:
        _refuse_if_locked(path, result.stderr)
        reason = result.stderr.strip().splitlines()[:1] or ["cannot open it"]
        raise InvalidImage(f"{path.name}: qemu cannot open it for writing: {reason[0]}")


def _refuse_if_locked(path: Path, stderr: str) -> None:
    if 'Failed to get "write" lock' in stderr or 'Failed to get shared "write" lock' in stderr:
        raise Conflict(
            f"{path.name} is in use by another process (qemu holds a lock on it: a running "
            "VM?); stop what uses it, or work on a copy"
        )


def _refuse_external_references(path: Path, info: dict[str, object]) -> None:
    """A backing file, an external data file or a VMDK extent elsewhere would let a crafted
    image make qemu read any file on the host (CVE-2015-5162 and friends)."""
    if info.get("backing-filename") or info.get("full-backing-filename"):
        raise InvalidImage(
            f"{path.name} has a backing file ({info.get('backing-filename')}); "
            "flatten it first: qemu-img convert -O qcow2 IN OUT"
        )
    specific = info.get("format-specific")
    data = specific.get("data", {}) if isinstance(specific, dict) else {}
    if isinstance(data, dict) and data.get("data-file"):
        raise InvalidImage(f"{path.name} uses an external data file ({data['data-file']})")
    for extent in data.get("extents", []) if isinstance(data, dict) else []:
        filename = extent.get("filename") if isinstance(extent, dict) else None
        if filename and Path(filename).resolve() != path.resolve():
            raise InvalidImage(f"{path.name} is a VMDK with an extent in another file ({filename})")


def _refuse_non_disk_raw(path: Path, file_size: int) -> None:
    if file_size % SECTOR:
        raise InvalidImage(
            f"{path.name} is not a disk image: its size ({file_size} bytes) is not a whole "
            f"number of {SECTOR}-byte sectors"
        )
    with path.open("rb") as handle:
        head = handle.read(8)
    for magic, what in _NOT_DISK_MAGIC.items():
        if head.startswith(magic):
            raise InvalidImage(f"{path.name} is {what}, not a disk image")


def copy_with_digest(
    source: Path, target: Path, progress: ProgressCallback | None = None, limit: int | None = None
) -> str:
    """Copies source to target (created 0640, fsynced) and returns the sha256 of the bytes."""
    total = source.stat().st_size
    digest = hashlib.sha256()
    done = 0
    try:
        with source.open("rb") as reader, _create(target) as writer:
            while chunk := reader.read(_CHUNK):
                done += len(chunk)
                if limit is not None and done > limit:
                    raise InvalidImage(f"{source.name} grew past the size limit while copying")
                digest.update(chunk)
                writer.write(chunk)
                if progress:
                    progress("copying", done, total)
            writer.flush()
            os.fsync(writer.fileno())
    except OSError as error:
        free_space.raise_if_full(error, target, total)
        raise
    return digest.hexdigest()


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as reader:
        while chunk := reader.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


_PROGRESS = re.compile(r"\((\d+(?:\.\d+)?)/100%\)")
_CONVERT_CPU_SECONDS = 1800
_CONVERT_TIMEOUT = 3600


def convert(
    source: Path,
    source_format: str,
    info: DiskInfo,
    target: Path,
    target_format: str,
    max_output: int,
    progress: ProgressCallback | None = None,
    qemu_img: str = "qemu-img",
    where: str = free_space.IMAGE_STORE,
) -> None:
    """Converts with `qemu-img convert -p`, reporting its percentage as ("converting", n, 100).

    A small compressed image can expand to its whole virtual size (a 400 KB zstd qcow2 to
    256 MiB of raw in half a second), so the output is bounded three times: a virtual size
    over `max_output` is refused before anything is written, qemu-img runs under limits on
    memory, CPU time and file size (prlimit), and the file it wrote is measured after.
    The virtual size is also the room asked of `target`'s filesystem (`where` in messages)."""
    if target_format not in CONVERSION_TARGETS:
        raise InvalidImage(f"cannot convert to {target_format!r}; choose one of qcow2, raw")
    if info.virtual_size > max_output:
        raise PayloadTooLarge(
            f"{source.name} expands to {info.virtual_size} bytes as {target_format}, over the "
            f"limit of {max_output} bytes (VDC_MAX_IMAGE_SIZE)"
        )
    free_space.require(target.parent, info.virtual_size, where)
    limits = (
        ["prlimit", "--as=2147483648", f"--cpu={_CONVERT_CPU_SECONDS}", f"--fsize={max_output}"]
        if shutil.which("prlimit")
        else []
    )
    args = [*limits, "--", qemu_img] if limits else [qemu_img]
    args += ["convert", "-p", "-f", source_format, "-O", target_format, str(source), str(target)]
    try:
        error = _run_with_progress(args, progress, timeout=_CONVERT_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        target.unlink(missing_ok=True)
        raise InvalidImage(
            f"conversion to {target_format} took over {_CONVERT_TIMEOUT // 60} minutes"
        ) from exc
    if error is not None:
        target.unlink(missing_ok=True)
        if any(os.strerror(code) in error for code in free_space.FULL):
            raise free_space.not_enough(target.parent, info.virtual_size, where=where)
        raise InvalidImage(f"conversion to {target_format} failed: {error}")
    written = target.stat().st_size
    if written > max_output:
        target.unlink(missing_ok=True)
        raise PayloadTooLarge(
            f"the {target_format} conversion is {written} bytes, over the limit of "
            f"{max_output} bytes (VDC_MAX_IMAGE_SIZE)"
        )
    if progress:
        progress("converting", 100, 100)


def _run_with_progress(
    args: list[str], progress: ProgressCallback | None, timeout: float
) -> str | None:
    """Runs qemu-img with -p; None on success, else its error (stderr, or the signal)."""
    deadline = time.monotonic() + timeout
    with subprocess.Popen(  # noqa: S603 - argument list, no shell
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        buffer = ""
        # qemu-img redraws "(12.34/100%)" with carriage returns; read as it comes.
        while char := proc.stdout.read(1):
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise subprocess.TimeoutExpired(args, timeout)
            buffer = buffer[-32:] + char
            if char == "\r" and (match := _PROGRESS.search(buffer)) and progress:
                progress("converting", int(float(match.group(1))), 100)
        error = proc.stderr.read().strip()
    if proc.returncode == 0:
        return None
    if proc.returncode == -signal.SIGXFSZ or "File too large" in error:  # EFBIG or SIGXFSZ
        return "the output grew past the size limit"
    if proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return "qemu-img ran out of its time or memory limits"
    return error or f"qemu-img exited with status {proc.returncode}"


def _create(path: Path):  # type: ignore[no-untyped-def]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    return os.fdopen(fd, "wb")

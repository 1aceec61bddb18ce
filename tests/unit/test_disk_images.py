"""disk_images.inspect on real files made with qemu-img: formats, sizes, and every refusal."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from app.errors import InvalidImage, PayloadTooLarge
from app.services.images import disk_images
from tests.conftest import make_iso_file


def create(path: Path, fmt: str, size: str = "16M", *extra: str) -> Path:
    subprocess.run(
        ["qemu-img", "create", "-f", fmt, *extra, str(path), size], check=True, capture_output=True
    )
    return path


# Every format the README lists as accepted.
ACCEPTED = ["raw", "qcow2", "vmdk", "vdi", "vhdx", "vpc", "qed", "parallels"]


@pytest.mark.parametrize("fmt", ACCEPTED)
def test_formats_kvm_reads_are_accepted(tmp_path: Path, fmt: str) -> None:
    info = disk_images.inspect(create(tmp_path / f"disk.{fmt}", fmt, "32M"))
    assert info.format == fmt
    assert info.virtual_size >= 32 * 1024**2
    assert info.file_size == (tmp_path / f"disk.{fmt}").stat().st_size


def test_vmdk_with_an_extent_elsewhere_is_refused(tmp_path: Path) -> None:
    # A hand-written VMDK descriptor whose "disk" is some other file on the host.
    secret = tmp_path / "secret.bin"
    secret.write_bytes(bytes(1024 * 1024))
    descriptor = tmp_path / "evil.vmdk"
    descriptor.write_text(
        "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n"
        'createType="monolithicFlat"\n\n'
        f'RW 2048 FLAT "{secret}" 0\n\n'
        'ddb.adapterType = "ide"\nddb.geometry.cylinders = "2"\n'
        'ddb.geometry.heads = "16"\nddb.geometry.sectors = "63"\n'
    )
    with pytest.raises(InvalidImage, match="extent in another file"):
        disk_images.inspect(descriptor)


def test_backing_file_is_refused(tmp_path: Path) -> None:
    base = create(tmp_path / "base.qcow2", "qcow2")
    overlay = create(tmp_path / "top.qcow2", "qcow2", "16M", "-b", str(base), "-F", "qcow2")
    with pytest.raises(InvalidImage, match="backing file"):
        disk_images.inspect(overlay)


def test_external_data_file_is_refused(tmp_path: Path) -> None:
    disk = create(tmp_path / "d.qcow2", "qcow2", "16M", "-o", f"data_file={tmp_path / 'd.data'}")
    with pytest.raises(InvalidImage, match="external data file"):
        disk_images.inspect(disk)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"x" * 1000, "not a whole number of 512-byte sectors"),
        (b"\xfd7zXZ\x00" + bytes(506), "xz archive"),
        (b"\x7fELF" + bytes(508), "executable"),
        (b"PK\x03\x04" + bytes(508), "zip archive"),
    ],
)
def test_raw_files_that_are_not_disks_are_refused(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "file.img"
    path.write_bytes(content)
    with pytest.raises(InvalidImage, match=message):
        disk_images.inspect(path)


def test_an_iso_is_raw_of_kind_iso_and_a_disk_is_not(tmp_path: Path) -> None:
    """qemu-img calls an installer CD raw; its ISO 9660 signature at 0x8001 makes it one."""
    iso = disk_images.inspect(make_iso_file(tmp_path / "debian.iso"))
    assert (iso.format, iso.kind) == ("raw", "iso")
    assert iso.virtual_size == iso.file_size == (tmp_path / "debian.iso").stat().st_size
    raw = disk_images.inspect(create(tmp_path / "disk.raw", "raw", "1M"))
    assert (raw.format, raw.kind) == ("raw", "disk")
    # The signature one byte off is no ISO (a disk that happens to hold the word).
    shifted = tmp_path / "shifted.raw"
    shifted.write_bytes(bytes(0x8002) + b"CD001" + bytes(1024 * 1024 - 0x8007))
    assert disk_images.inspect(shifted).kind == "disk"
    qcow2 = disk_images.inspect(create(tmp_path / "disk.qcow2", "qcow2"))
    assert (qcow2.format, qcow2.kind) == ("qcow2", "disk")


def test_relative_paths_are_a_programming_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="absolute"):
        disk_images.inspect(Path("disk.qcow2"))


def test_copy_with_digest_and_convert_report_progress(tmp_path: Path) -> None:
    source = create(tmp_path / "src.raw", "raw", "8M")
    source.write_bytes(b"\x01" * 8 * 1024 * 1024)
    seen: list[tuple[str, int, int]] = []
    digest = disk_images.copy_with_digest(source, tmp_path / "copy.raw", lambda *a: seen.append(a))
    assert digest == disk_images.file_digest(source)
    assert seen[-1] == ("copying", source.stat().st_size, source.stat().st_size)

    seen.clear()
    copy = tmp_path / "copy.raw"
    disk_images.convert(
        copy,
        "raw",
        disk_images.inspect(copy),
        tmp_path / "out.qcow2",
        "qcow2",
        64 * 1024 * 1024,
        lambda *a: seen.append(a),
    )
    assert disk_images.inspect(tmp_path / "out.qcow2").format == "qcow2"
    assert seen[-1] == ("converting", 100, 100)


def test_copy_refuses_a_file_growing_past_the_limit(tmp_path: Path) -> None:
    source = create(tmp_path / "src.raw", "raw", "8M")
    with pytest.raises(InvalidImage, match="size limit"):
        disk_images.copy_with_digest(source, tmp_path / "copy.raw", limit=4 * 1024 * 1024)


def _bomb(tmp_path: Path, virtual: str = "256M") -> Path:
    """A qcow2 of a few KB whose compressed clusters expand to `virtual` bytes of data."""
    raw = tmp_path / "pattern.raw"
    with raw.open("wb") as out:
        out.truncate(0)
        block = b"vdc-bomb" * (1024 * 1024 // 8)
        for _ in range(int(virtual.removesuffix("M"))):
            out.write(block)
    bomb = tmp_path / "bomb.qcow2"
    subprocess.run(
        [
            "qemu-img",
            "convert",
            "-c",
            "-O",
            "qcow2",
            "-o",
            "compression_type=zstd",
            str(raw),
            str(bomb),
        ],
        check=True,
        capture_output=True,
    )
    raw.unlink()
    return bomb


def test_convert_refuses_a_virtual_size_over_the_limit_before_writing(tmp_path: Path) -> None:
    bomb = _bomb(tmp_path)
    assert bomb.stat().st_size < 4 * 1024 * 1024
    info = disk_images.inspect(bomb)
    out = tmp_path / "out.raw"
    with pytest.raises(PayloadTooLarge, match="expands to 268435456 bytes"):
        disk_images.convert(bomb, "qcow2", info, out, "raw", 64 * 1024 * 1024)
    assert not out.exists()


def test_convert_is_stopped_at_the_limit_even_when_the_header_lies(tmp_path: Path) -> None:
    """qemu-img runs under a file size limit: past it the kernel stops the write."""
    bomb = _bomb(tmp_path)
    lying = disk_images.DiskInfo(format="qcow2", virtual_size=1024, file_size=1024)
    out = tmp_path / "out.raw"
    with pytest.raises(InvalidImage, match="grew past the size limit"):
        disk_images.convert(bomb, "qcow2", lying, out, "raw", 16 * 1024 * 1024)
    assert not out.exists()

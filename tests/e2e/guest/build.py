"""Build the tiny test guest disk image of the e2e tests, from Debian packages, cached.

The image (qcow2, about 16 MB) holds a FAT partition booted by syslinux with Debian's
cloud kernel and a busybox initramfs whose /init (init.sh beside this file) reports on the
serial console and runs commands it polls from the gateway: see README.md here.

    build_image(cache_dir) -> Path of the finished qcow2
    python tests/e2e/guest/build.py CACHE_DIR      # prints that path

The file name carries a hash of this file, init.sh, udhcpc.sh and the versions of the Debian
packages that go in, so an image is built again only when one of those changed. Nothing is
mounted: the disk is made with sfdisk, mkfs.fat, syslinux and mtools on a plain file. Build
tools that are missing are installed with apt-get (the machines run as root).
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import io
import json
import lzma
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
INIT_SCRIPT = HERE / "init.sh"
UDHCPC_SCRIPT = HERE / "udhcpc.sh"

IMAGE_PREFIX = "vdc-e2e-guest-"
KERNEL_META_PACKAGE = "linux-image-cloud-amd64"
BUSYBOX_PACKAGE = "busybox-static"
SYSLINUX_PACKAGE = "syslinux"
MBR_BIN = Path("/usr/lib/syslinux/mbr/mbr.bin")
KERNEL_CMDLINE = "console=ttyS0,115200 quiet panic=-1"

# Debian packages of the tools that make the disk (installed when missing).
BUILD_TOOLS: tuple[str, ...] = (
    "syslinux",  # syslinux --install
    "syslinux-common",  # mbr.bin
    "mtools",  # mcopy
    "dosfstools",  # mkfs.fat
    "fdisk",  # sfdisk
    "qemu-utils",  # qemu-img
)

# Modules /init loads, in this order; those the kernel lacks or has built in are left out.
# button and evdev first: the power button reaches /init as an input event (see init.sh).
MODULES: tuple[str, ...] = (
    "button",
    "evdev",
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "failover",
    "net_failover",
    "virtio_net",
    "virtio_blk",
    "acpiphp",
)
# Loaded after those: vfat and the code pages its defaults name (codepage 437, iocharset
# ascii), for the metadata drive (tests/e2e/test_metadata_drive_e2e.py mounts it).
VFAT_MODULES: tuple[str, ...] = ("fat", "vfat", "nls_cp437", "nls_ascii")

INITRAMFS_DIRECTORIES = (
    "bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "run", "var",
    "etc", "etc/udhcpc", "lib", "lib/modules",
)  # fmt: skip

DISK_MIB = 32
PARTITION_START_SECTOR = 2048  # 1 MiB
SECTOR = 512

SYSLINUX_CFG = f"""\
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  KERNEL vmlinuz
  INITRD initrd
  APPEND {KERNEL_CMDLINE}
"""


class BuildError(RuntimeError):
    """A step of the build failed; the message says which and why."""


@dataclass(frozen=True)
class Inputs:
    """The Debian packages that go into the image, as the cache key sees them."""

    kernel_package: str
    kernel_version: str
    busybox_version: str
    syslinux_version: str


# --- public API ---------------------------------------------------------------------------


def build_image(cache_dir: Path) -> Path:
    """Return the path of the guest qcow2 in cache_dir, building it first if needed.

    Safe to call from several processes at once (a lock file in cache_dir serializes
    builds). Images of older inputs in cache_dir are removed after a new build.
    """
    cache_dir = cache_dir.resolve()
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _locked(cache_dir / ".guest-build.lock"):
        inputs = resolve_inputs()
        image = cache_dir / f"{IMAGE_PREFIX}{cache_key(inputs)}.qcow2"
        if image.exists():
            return image
        _log(f"building {image.name} ({inputs.kernel_package} {inputs.kernel_version})")
        ensure_packages(BUILD_TOOLS)
        with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".guest-build-") as tmp:
            built = _build(Path(tmp), inputs)
            os.replace(built, image)
        for old in cache_dir.glob(f"{IMAGE_PREFIX}*.qcow2"):
            if old != image:
                old.unlink(missing_ok=True)
        return image


def resolve_inputs() -> Inputs:
    """Find the current cloud kernel package and the versions of what goes in the image."""
    kernel_package = _cloud_kernel_package()
    candidates = _candidate_versions([kernel_package, BUSYBOX_PACKAGE, SYSLINUX_PACKAGE])
    return Inputs(
        kernel_package=kernel_package,
        kernel_version=candidates[kernel_package],
        busybox_version=candidates[BUSYBOX_PACKAGE],
        syslinux_version=_installed_version(SYSLINUX_PACKAGE) or candidates[SYSLINUX_PACKAGE],
    )


def cache_key(inputs: Inputs) -> str:
    digest = hashlib.sha256()
    for source in (Path(__file__).resolve(), INIT_SCRIPT, UDHCPC_SCRIPT):
        digest.update(source.read_bytes())
    digest.update(json.dumps(asdict(inputs), sort_keys=True).encode())
    return digest.hexdigest()[:16]


# --- apt ----------------------------------------------------------------------------------


def _run(
    args: Sequence[str | Path],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    input_text: str | None = None,
) -> str:
    """Run a command (an argument list, never a shell string); its stdout, or BuildError."""
    argv = [str(a) for a in args]
    result = subprocess.run(
        argv,
        cwd=cwd,
        env=None if env is None else {**os.environ, **env},
        input=input_text,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BuildError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr.strip()}")
    return result.stdout


_apt_updated = False


def _apt_update() -> None:
    global _apt_updated
    if not _apt_updated:
        _log("apt-get update")
        _run(["apt-get", "update", "-q"])
        _apt_updated = True


def _cloud_kernel_package() -> str:
    """linux-image-<version>-cloud-amd64, as the meta package currently depends on it."""
    for attempt in range(2):
        if attempt:
            _apt_update()
        try:
            out = _run(["apt-cache", "depends", KERNEL_META_PACKAGE])
        except BuildError:
            continue
        for line in out.splitlines():
            name = line.partition("Depends:")[2].strip()
            if name.startswith("linux-image-") and name.endswith("-cloud-amd64"):
                return name
    raise BuildError(f"apt knows no kernel behind {KERNEL_META_PACKAGE}")


def _candidate_versions(packages: Sequence[str]) -> dict[str, str]:
    """The version apt would install of each package (one apt-cache call)."""
    versions: dict[str, str] = {}
    for attempt in range(2):
        if attempt:
            _apt_update()
        package = ""
        for line in _run(["apt-cache", "policy", *packages]).splitlines():
            if not line.startswith(" ") and line.endswith(":"):
                package = line[:-1]
            key, _, value = line.strip().partition(":")
            if key == "Candidate" and value.strip() not in ("", "(none)"):
                versions[package] = value.strip()
        missing = [p for p in packages if p not in versions]
        if not missing:
            return versions
    raise BuildError(f"apt has no candidate version of {' '.join(missing)}")


def _installed_version(package: str) -> str | None:
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${db:Status-Abbrev}${Version}", package],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or not result.stdout.startswith("ii "):
        return None
    return result.stdout[3:].strip()


def ensure_packages(packages: Sequence[str]) -> None:
    """apt-get install those of packages that are not installed yet."""
    missing = [p for p in packages if _installed_version(p) is None]
    if not missing:
        return
    _log(f"installing {' '.join(missing)}")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    try:
        _run(install, env=env)
    except BuildError:
        _apt_update()
        _run(install, env=env)


def _download_and_extract(package: str, version: str, workdir: Path) -> Path:
    """apt-get download package=version and dpkg -x it; returns the extracted tree."""
    debs = workdir / "debs"
    debs.mkdir(exist_ok=True)
    # The sandbox user _apt cannot write into a root-owned temp dir: download as root.
    _run(
        ["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", f"{package}={version}"],
        cwd=debs,
    )
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        raise BuildError(f"apt-get download {package} left no .deb")
    tree = workdir / package
    _run(["dpkg", "-x", found[0], tree])
    return tree


# --- initramfs ----------------------------------------------------------------------------


class Cpio:
    """A newc cpio archive written in memory: the initramfs, with no root rights needed."""

    def __init__(self) -> None:
        self._out = io.BytesIO()
        self._ino = 0

    def _entry(
        self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)
    ) -> None:
        self._ino += 1
        encoded = name.encode() + b"\0"
        nlink = 2 if mode & 0o170000 == 0o040000 else 1
        header = {
            "ino": self._ino,
            "mode": mode,
            "uid": 0,
            "gid": 0,
            "nlink": nlink,
            "mtime": 0,
            "filesize": len(data),
            "devmajor": 0,
            "devminor": 0,
            "rdevmajor": rdev[0],
            "rdevminor": rdev[1],
            "namesize": len(encoded),
            "check": 0,
        }
        self._out.write(b"070701" + b"".join(b"%08X" % v for v in header.values()))
        self._out.write(encoded)
        self._pad()
        self._out.write(data)
        self._pad()

    def _pad(self) -> None:
        self._out.write(b"\0" * (-self._out.tell() % 4))

    def directory(self, name: str) -> None:
        self._entry(name, 0o040755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, 0o100000 | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, 0o120777, target.encode())

    def char_device(self, name: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._entry(name, 0o020000 | mode, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self._out.getvalue()


def _module_index(modules_dir: Path) -> dict[str, Path]:
    """Module name (with _ for -) -> its file, for .ko and compressed .ko.{xz,zst,gz}."""
    index: dict[str, Path] = {}
    for path in modules_dir.rglob("*.ko*"):
        name, _, _ = path.name.partition(".ko")
        index[name.replace("-", "_")] = path
    return index


def _module_bytes(path: Path) -> bytes:
    """The module, decompressed: busybox insmod loads only plain .ko files."""
    if path.name.endswith(".ko"):
        return path.read_bytes()
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(path.read_bytes())
    if path.name.endswith(".ko.gz"):
        return gzip.decompress(path.read_bytes())
    if path.name.endswith(".ko.zst"):
        ensure_packages(["zstd"])
        return subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True).stdout
    raise BuildError(f"unknown module compression: {path}")


def _initramfs(busybox: Path, modules_dir: Path) -> bytes:
    index = _module_index(modules_dir)
    builtin_file = modules_dir / "modules.builtin"
    builtin = builtin_file.read_text() if builtin_file.exists() else ""
    cpio = Cpio()
    for directory in INITRAMFS_DIRECTORIES:
        cpio.directory(directory)
    cpio.symlink("var/run", "../run")
    cpio.char_device("dev/console", 5, 1)
    cpio.char_device("dev/null", 1, 3, mode=0o666)
    cpio.file("bin/busybox", busybox.read_bytes(), 0o755)
    cpio.symlink("bin/sh", "busybox")
    cpio.file("init", INIT_SCRIPT.read_bytes(), 0o755)
    cpio.file("etc/udhcpc/default.script", UDHCPC_SCRIPT.read_bytes(), 0o755)
    loaded: list[str] = []
    for name in (*MODULES, *VFAT_MODULES):
        path = index.get(name)
        if path is None:
            where = "built in" if f"/{name}.ko" in builtin.replace("-", "_") else "absent"
            _log(f"module {name}: {where}, not loaded")
            continue
        cpio.file(f"lib/modules/{name}.ko", _module_bytes(path))
        loaded.append(name)
    cpio.file("etc/modules", "".join(f"{m}\n" for m in loaded).encode())
    return gzip.compress(cpio.finish(), compresslevel=9, mtime=0)


# --- disk ---------------------------------------------------------------------------------


def _build(workdir: Path, inputs: Inputs) -> Path:
    kernel_tree = _download_and_extract(inputs.kernel_package, inputs.kernel_version, workdir)
    busybox_tree = _download_and_extract(BUSYBOX_PACKAGE, inputs.busybox_version, workdir)

    vmlinuz = next(iter(sorted((kernel_tree / "boot").glob("vmlinuz-*"))), None)
    if vmlinuz is None:
        raise BuildError(f"{inputs.kernel_package} has no /boot/vmlinuz-*")
    release = vmlinuz.name.removeprefix("vmlinuz-")
    candidates = [kernel_tree / lib / "modules" / release for lib in ("lib", "usr/lib")]
    modules_dir = next((d for d in candidates if d.is_dir()), None)
    if modules_dir is None:
        raise BuildError(f"{inputs.kernel_package} has no modules folder for {release}")

    initrd = workdir / "initrd"
    initrd.write_bytes(_initramfs(busybox_tree / "bin/busybox", modules_dir))
    syslinux_cfg = workdir / "syslinux.cfg"
    syslinux_cfg.write_text(SYSLINUX_CFG)

    raw = workdir / "disk.img"
    with raw.open("wb") as f:  # truncate: a sparse file of DISK_MIB
        f.truncate(DISK_MIB * 1024 * 1024)
    _run(
        ["sfdisk", "--no-reread", "--no-tell-kernel", "-q", raw],
        input_text=f"label: dos\nstart={PARTITION_START_SECTOR}, type=6, bootable\n",
    )
    fs_kib = (DISK_MIB * 1024 * 1024 - PARTITION_START_SECTOR * SECTOR) // 1024
    _run(
        ["mkfs.fat", "-F", "16", "-n", "VDCGUEST",
         "-h", str(PARTITION_START_SECTOR), "--offset", str(PARTITION_START_SECTOR),
         raw, str(fs_kib)]
    )  # fmt: skip
    _run(["syslinux", "--offset", str(PARTITION_START_SECTOR * SECTOR), "--install", raw])
    _run(["dd", f"if={MBR_BIN}", f"of={raw}", "bs=440", "count=1", "conv=notrunc"])
    mtools_env = {"MTOOLS_SKIP_CHECK": "1"}
    for source, target in (
        (vmlinuz, "vmlinuz"),
        (initrd, "initrd"),
        (syslinux_cfg, "syslinux.cfg"),
    ):
        _run(["mcopy", "-o", "-i", f"{raw}@@1M", source, f"::{target}"], env=mtools_env)

    qcow2 = workdir / "disk.qcow2"
    _run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, qcow2])
    return qcow2


# --- helpers ------------------------------------------------------------------------------


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _log(message: str) -> None:
    print(f"guest-build: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        print("usage: build.py CACHE_DIR", file=sys.stderr)
        return 2
    try:
        print(build_image(Path(argv[0])))
    except BuildError as e:
        print(f"guest-build: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

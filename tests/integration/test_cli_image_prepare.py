"""`vdc-manage image prepare` and `vdc-manage guest-script` as an operator runs them: real
processes, real image files. Every refusal is checked to leave the file as it was.

The full preparation of a real Linux disk, read back with libguestfs and booted, is in
tests/e2e/test_guest_images_e2e.py; here is what an operator meets when it cannot be done.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import Settings
from app.guest import vdc_init_script, vdc_init_unit

BIN = Path(sys.executable).parent


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    return sqlite_url


def manage(
    *args: str, settings: Settings, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VDC_")} | {
        "VDC_DATA_DIR": str(settings.data_dir),
        "VDC_ALLOW_TEST_HOSTS": "true",  # test:// hosts
        "VDC_DATABASE_URL": settings.effective_database_url,
        "VDC_IMPORT_DIRS": settings.import_dirs,
        "COLUMNS": "200",
    }
    return subprocess.run(
        [str(BIN / "vdc-manage"), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def refused(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert fragment in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- guest-script ---------------------------------------------------------------------


def test_guest_script_prints_the_shipped_script_and_its_unit(settings: Settings) -> None:
    script = manage("guest-script", settings=settings)
    assert script.returncode == 0, script.stderr
    assert script.stdout == vdc_init_script()
    assert script.stdout.startswith("#!/bin/sh\n")
    unit = manage("guest-script", "--systemd-unit", settings=settings)
    assert unit.stdout == vdc_init_unit()
    assert "ExecStart=/usr/local/sbin/vdc-init" in unit.stdout


def test_guest_script_runs_as_printed(tmp_path: Path, settings: Settings) -> None:
    """What an operator pipes into a file is a working script (its --help answers)."""
    path = tmp_path / "vdc-init"
    path.write_text(manage("guest-script", settings=settings).stdout)
    path.chmod(0o755)
    result = subprocess.run([str(path), "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert "vdc-init: sets an instance up at boot" in result.stdout


# --- refusals before any work ---------------------------------------------------------


def test_a_file_that_is_not_a_disk_image_is_refused(settings: Settings, import_dir: Path) -> None:
    archive = import_dir / "debian.img"
    packed = gzip.compress(bytes(4096))
    archive.write_bytes(packed + bytes(-len(packed) % 512))  # whole sectors, still a gzip
    refused(manage("image", "prepare", str(archive), settings=settings), "is a gzip archive")
    refused(
        manage("image", "prepare", str(import_dir / "missing.raw"), settings=settings),
        "no such file",
    )


def test_a_read_only_image_is_refused(settings: Settings, make_disk) -> None:  # type: ignore[no-untyped-def]
    image = make_disk("ro.raw", "raw", "16M")
    image.chmod(0o444)
    before = digest(image)
    refused(manage("image", "prepare", str(image), settings=settings), "is read-only (mode 444)")
    assert digest(image) == before


@pytest.fixture(params=["read-write", "read-only"])
def running_vm(request: pytest.FixtureRequest, make_disk) -> Iterator[Path]:  # type: ignore[no-untyped-def]
    """A paused qemu VM (no network, no display) with the image as its disk; read-only is
    how VMs use a base image under their overlays."""
    image = make_disk("busy.qcow2", "qcow2", "16M")
    readonly = ",readonly=on" if request.param == "read-only" else ""
    vm = subprocess.Popen(
        ["qemu-system-x86_64", "-machine", "pc,accel=tcg", "-S", "-nodefaults",
         "-display", "none", "-drive", f"file={image},format=qcow2,if=virtio{readonly}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120  # generous: waited for, not slept
        while time.monotonic() < deadline and vm.poll() is None:
            probe = subprocess.run(
                ["qemu-io", "-f", "qcow2", "-c", "quit", str(image)],
                capture_output=True,
                text=True,
                check=False,
            )
            if "lock" in probe.stderr:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("qemu did not open the image")
        yield image
    finally:
        vm.terminate()
        vm.wait(timeout=30)


def test_an_image_in_use_by_a_vm_is_refused(settings: Settings, running_vm: Path) -> None:
    before = digest(running_vm)
    result = manage("image", "prepare", str(running_vm), settings=settings)
    refused(result, "busy.qcow2 is in use by another process")
    assert digest(running_vm) == before


def test_vdcs_own_copies_are_refused(settings: Settings) -> None:
    store = settings.data_dir / "images"
    store.mkdir(parents=True)
    registered = store / "wmi-abcd1234.qcow2"
    subprocess.run(["qemu-img", "create", "-f", "qcow2", str(registered), "16M"], check=True)
    refused(manage("image", "prepare", str(registered), settings=settings), "in vdc's own store")


def test_options_are_checked_before_the_appliance_starts(
    settings: Settings, make_disk, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    image = make_disk("opts.raw", "raw", "16M")
    refused(manage("image", "prepare", str(image), "--register", settings=settings), "needs --arch")
    refused(
        manage("image", "prepare", str(image), "--init-user", "debian", settings=settings),
        "add --install-init",
    )
    refused(
        manage("image", "prepare", str(image), "--nameserver", "dns.example", settings=settings),
        "is not an IP address",
    )
    refused(
        manage("image", "prepare", str(image), "--convert", "vmdk", settings=settings),
        "choose one of qcow2, raw",
    )
    (image.with_suffix(".qcow2")).write_bytes(b"in the way")
    refused(
        manage("image", "prepare", str(image), "--convert", "qcow2", settings=settings),
        "exists already",
    )
    elsewhere = tmp_path / "outside.raw"
    subprocess.run(["qemu-img", "create", "-f", "raw", str(elsewhere), "16M"], check=True)
    refused(
        manage(
            "image", "prepare", str(elsewhere), "--register", "--arch", "x86_64",
            settings=settings,
        ),
        "outside the import directories",
    )  # fmt: skip
    refused(
        manage(
            "image", "prepare", str(image), "--register", "--arch", "x86_64",
            "--account-id", "a-nobody00", settings=settings,
        ),
        "a-nobody00",
    )  # fmt: skip


# --- refusal from inside the image (one appliance start) --------------------------------


def test_an_image_with_no_linux_in_it_is_refused_unchanged(
    settings: Settings, import_dir: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data-only"
    (data / "photos").mkdir(parents=True)
    (data / "photos" / "cat.txt").write_text("not an operating system\n")
    image = import_dir / "data.raw"
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-d", str(data), str(image), "16M"],
        check=True,
        capture_output=True,
    )
    before = digest(image)
    result = manage("image", "prepare", str(image), "--install-init", settings=settings)
    refused(result, "data.raw: no recognisable Linux in it")
    assert digest(image) == before


# --- a systemd image: the other way to run vdc-init, resolved, modules-load.d -----------


def debugfs(image: Path, request: str) -> str:
    """Reads the ext4 filesystem of `image` without mounting it (e2fsprogs' debugfs)."""
    result = subprocess.run(
        ["debugfs", "-R", request, str(image)], capture_output=True, text=True, check=True
    )
    return result.stdout


def systemd_tree(root: Path) -> Path:
    files = {
        "etc/os-release": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n'
        'VERSION_ID="12"\n',
        "etc/debian_version": "12.5\n",
        "etc/fstab": "/dev/vda / ext4 defaults 0 1\n",
        "etc/passwd": "root:x:0:0:root:/root:/bin/bash\n"
        "debian:x:1000:1000:Debian:/home/debian:/bin/bash\n",
        "etc/hostname": "localhost\n",
        "bin/sh": "an executable would be here\n",
        "bin/bash": "bash would be here\n",
        "lib/systemd/systemd": "systemd would be here\n",
        "usr/bin/cloud-init": "cloud-init would be here\n",
        "lib/modules/6.1.0-9-amd64/modules.builtin": "kernel/fs/ext4/ext4.ko\n",
        "var/log/dpkg.log": "2024-01-01 00:00:00 install x\n" * 20,
        "var/log/journal/0a1b/system.journal": "LPKSHHRH" * 64,
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    for folder in ("etc/systemd/system", "etc/modules-load.d", "etc/ssh", "home/debian"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "etc/resolv.conf").symlink_to("../run/systemd/resolve/stub-resolv.conf")
    (root / "var/log/README").symlink_to("../../usr/share/doc/systemd/README.logs")
    return root


def test_a_systemd_image_gets_the_unit_resolved_and_modules_load_d(
    settings: Settings, import_dir: Path, tmp_path: Path
) -> None:
    image = import_dir / "debian-like.raw"
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-d", str(systemd_tree(tmp_path / "tree")), str(image), "32M"],
        check=True,
        capture_output=True,
    )
    result = manage(
        "image", "prepare", str(image), "--install-init", "--init-user", "debian",
        "--nameserver", "9.9.9.9", settings=settings,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = result.stdout
    assert f"prepared {image}: debian 12.5 (root /dev/sda)" in report
    for change in (
        "added acpiphp to /etc/modules-load.d/acpiphp.conf",
        "emptied 1 log file(s): /var/log/dpkg.log",
        "removed 1 old log file(s): /var/log/journal/0a1b/system.journal",
        "added name server 9.9.9.9 to systemd-resolved "
        "(/etc/systemd/resolved.conf.d/vdc-nameserver-9.9.9.9.conf)",
        "installed vdc-init as /usr/local/sbin/vdc-init",
        "vdc-init installs the public keys for debian (/etc/default/vdc-init)",
        "enabled /etc/systemd/system/vdc-init.service",
        "note: this image has cloud-init",
        "note: vdc-init will use bash (/dev/tcp, HTTP/1.0), started by systemd",
    ):
        assert change in report, report
    assert "udev" not in report and "SSH host keys" not in report  # there were none

    assert debugfs(image, "cat /etc/systemd/system/vdc-init.service") == vdc_init_unit()
    wants = debugfs(image, "stat /etc/systemd/system/multi-user.target.wants/vdc-init.service")
    assert 'Fast link dest: "/etc/systemd/system/vdc-init.service"' in wants
    assert debugfs(image, "cat /usr/local/sbin/vdc-init") == vdc_init_script()
    assert "Mode:  0755" in debugfs(image, "stat /usr/local/sbin/vdc-init")
    assert debugfs(image, "cat /etc/default/vdc-init") == "VDC_INIT_USER=debian\n"
    assert debugfs(image, "cat /etc/modules-load.d/acpiphp.conf") == "acpiphp\n"
    assert debugfs(image, "cat /etc/systemd/resolved.conf.d/vdc-nameserver-9.9.9.9.conf") == (
        "[Resolve]\nDNS=9.9.9.9\n"
    )
    assert "Size: 0" in debugfs(image, "stat /var/log/dpkg.log")
    assert "system.journal" not in debugfs(image, "ls /var/log/journal/0a1b")
    assert "README" in debugfs(image, "ls /var/log")  # a link, not a log: left alone
    assert "Fast link dest" in debugfs(image, "stat /etc/resolv.conf")

    # Each step changes only what needs changing: a second run finds nothing to do.
    again = manage(
        "image", "prepare", str(image), "--install-init", "--init-user", "debian",
        "--nameserver", "9.9.9.9", settings=settings,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "changed:" not in again.stdout and "nothing needed changing" in again.stdout


# --- what vdc-init and the network need (issue: vdc-init on a minimal distribution) ------


def minimal_tree(root: Path, *, bash: bool) -> Path:
    """A minimal systemd distribution: no curl, no wget, no busybox, no python3; bash only
    if asked; cloud-init installed but switched off by its marker file; no DHCP set up."""
    files = {
        "etc/os-release": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n'
        'VERSION_ID="12"\n',
        "etc/debian_version": "12.5\n",
        "etc/fstab": "/dev/vda / ext4 defaults 0 1\n",
        "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
        "bin/sh": "dash would be here\n",
        "usr/lib/systemd/systemd": "systemd would be here\n",
        "usr/bin/cloud-init": "cloud-init would be here\n",
        "etc/cloud/cloud-init.disabled": "",
    }
    if bash:
        files["usr/bin/bash"] = "bash would be here\n"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "etc/systemd/system").mkdir(parents=True)
    return root


def test_an_image_vdc_init_could_not_work_in_is_refused_unchanged(
    settings: Settings, import_dir: Path, tmp_path: Path
) -> None:
    image = import_dir / "no-http.raw"
    tree = minimal_tree(tmp_path / "tree", bash=False)
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-d", str(tree), str(image), "32M"],
        check=True,
        capture_output=True,
    )
    before = digest(image)
    result = manage("image", "prepare", str(image), "--install-init", settings=settings)
    refused(result, "no curl, wget, busybox, python3 or bash")
    assert digest(image) == before


def test_a_minimal_image_with_bash_is_prepared_and_told_what_it_lacks(
    settings: Settings, import_dir: Path, tmp_path: Path
) -> None:
    image = import_dir / "bash-only.raw"
    tree = minimal_tree(tmp_path / "tree", bash=True)
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-d", str(tree), str(image), "32M"],
        check=True,
        capture_output=True,
    )
    result = manage("image", "prepare", str(image), "--install-init", settings=settings)
    assert result.returncode == 0, result.stderr
    report = result.stdout
    assert "note: vdc-init will use bash (/dev/tcp, HTTP/1.0), started by systemd" in report
    assert (
        "note: cloud-init is installed but switched off (/etc/cloud/cloud-init.disabled)" in report
    )
    assert "has cloud-init, which also reads" not in report
    assert "warning: found nothing that brings the first network interface up by DHCP" in report
    assert "enabled /etc/systemd/system/vdc-init.service" in report

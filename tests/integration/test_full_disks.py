"""A full disk is a clear refusal, never a 500: the image store on a 24 MiB filesystem (a
tmpfs mounted in a private mount namespace, so the machine's mounts are untouched), and
libvirt hosts whose storage pool has no room for a disk."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.conftest import Keys, bearer, qemu_img
from tests.integration.cloud import Cloud, build_cloud
from tests.integration.served import Served, vdc_serve
from tests.integration.test_volumes import create, wait_volume

BIN = Path(sys.executable).parent
MIB = 1024 * 1024
SMALL = "24m"
NOT_ENOUGH = re.compile(r"not enough space in the image store: (\d+) MiB free, 40 MiB needed")

namespaces = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare (a private mount namespace for a small filesystem)",
)


def on_small_disk(data_dir: Path) -> list[str]:
    """A command prefix: a private mount namespace with a 24 MiB tmpfs over `data_dir`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    mount = f'mount -t tmpfs -o size={SMALL},mode=0711 vdc-small "$0" && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", mount, str(data_dir)]


def raw_image(path: Path, mib: int) -> Path:
    """A raw disk image of real (non-zero) bytes: a copy of it takes all its size."""
    block = bytes(range(256)) * 4096  # 1 MiB
    with path.open("wb") as out:
        for _ in range(mib):
            out.write(block)
    return path


# --- the image store on a small filesystem, through the API --------------------------------


@pytest.fixture
def small_server(tmp_path: Path, free_tcp_port_factory: Callable[[], int]) -> Iterator[Served]:
    with vdc_serve(tmp_path, free_tcp_port_factory, prefix=on_small_disk(tmp_path / "data")) as s:
        yield s


def image_files(served: Served) -> list[str]:
    """The image store as `vdc serve` sees it (its mount namespace, through /proc)."""
    images = served.files / "images"
    return sorted(p.name for p in images.iterdir()) if images.is_dir() else []


def upload(served: Served, content: bytes | Iterator[bytes]) -> httpx.Response:
    return httpx.post(
        f"{served.base}/api/v1/images",
        params={"arch": "x86_64"},
        content=content,
        headers={**bearer(served.admin_key), "Content-Type": "application/octet-stream"},
        timeout=60,
    )


def still_works(served: Served) -> None:
    """The server answers and takes an image that fits; nothing of the refused one is left."""
    assert image_files(served) == []
    small = upload(served, raw_image(served.data_dir.parent / "small.raw", 1).read_bytes())
    assert small.status_code == 201, small.text
    listed = httpx.get(f"{served.base}/api/v1/images", headers=bearer(served.admin_key))
    assert listed.status_code == 200 and listed.json()["total"] == 1, listed.text
    assert image_files(served) == [f"{small.json()['id']}.raw"]


@namespaces
def test_an_upload_bigger_than_the_free_space_is_refused_before_it_is_read(
    small_server: Served, tmp_path: Path
) -> None:
    big = raw_image(tmp_path / "big.raw", 40)
    response = upload(small_server, big.read_bytes())
    assert response.status_code == 507, response.text
    assert response.json()["type"] == "insufficient_storage"
    free = NOT_ENOUGH.fullmatch(response.json()["detail"])
    assert free and 20 <= int(free.group(1)) <= 24, response.text
    still_works(small_server)


@namespaces
def test_a_streamed_upload_that_fills_the_disk_is_refused(
    small_server: Served, tmp_path: Path
) -> None:
    """Without a Content-Length nothing can be checked first: the disk fills, the partial
    file goes, and the answer says what is known."""

    def body() -> Iterator[bytes]:
        block = bytes(range(256)) * 4096
        for _ in range(40):
            yield block

    response = upload(small_server, body())
    assert response.status_code == 507, response.text
    detail = response.json()["detail"]
    assert re.fullmatch(
        r"not enough space in the image store: \d+ MiB free, at least \d+ MiB needed", detail
    ), detail
    still_works(small_server)


# --- the image store on a small filesystem, through vdc-manage -----------------------------


def manage_on_small_disk(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`vdc migrate`, then `vdc-manage ARGS`, with the data dir on a 24 MiB filesystem."""
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VDC_")} | {
        "VDC_DATA_DIR": str(data_dir),
        "VDC_IMPORT_DIRS": str(tmp_path / "import"),
        "COLUMNS": "200",
    }
    script = (
        'vdc=$0 manage=$1 && shift && "$vdc" migrate >/dev/null && "$manage" "$@"; status=$?; '
        'ls -A "$VDC_DATA_DIR/images" 2>/dev/null; exit $status'
    )
    return subprocess.run(
        [
            *on_small_disk(data_dir),
            "sh",
            "-c",
            script,
            str(BIN / "vdc"),
            str(BIN / "vdc-manage"),
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_red_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: "), result.stderr
    assert result.stdout == "", "the image store holds no file: " + result.stdout
    return errors[0].removeprefix("error: ")


@namespaces
def test_image_add_local_refuses_a_file_bigger_than_the_free_space(tmp_path: Path) -> None:
    (tmp_path / "import").mkdir()
    big = raw_image(tmp_path / "import" / "big.raw", 40)
    result = manage_on_small_disk(tmp_path, "image", "add", "local", str(big), "--arch", "x86_64")
    assert NOT_ENOUGH.fullmatch(one_red_line(result)), result.stderr


@namespaces
def test_a_conversion_bigger_than_the_free_space_is_refused(tmp_path: Path) -> None:
    """A small qcow2 whose raw form (its virtual size) would not fit."""
    (tmp_path / "import").mkdir()
    small = tmp_path / "import" / "small.qcow2"
    qemu_img("create", "-f", "qcow2", str(small), "40M")
    result = manage_on_small_disk(
        tmp_path, "image", "add", "local", str(small), "--arch", "x86_64", "--convert", "raw"
    )
    assert NOT_ENOUGH.fullmatch(one_red_line(result)), result.stderr


@namespaces
def test_a_conversion_that_meets_a_full_disk_is_refused(tmp_path: Path) -> None:
    """Others may fill the disk after the check: qemu-img's "No space left on device" is the
    same refusal, and its partial output is removed."""
    source = tmp_path / "busy.qcow2"
    raw = raw_image(tmp_path / "busy.raw", 40)
    qemu_img("convert", "-c", "-f", "raw", "-O", "qcow2", str(raw), str(source))
    data_dir = tmp_path / "data"
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from app.errors import InsufficientStorage\n"
        "from app.services.images import disk_images, free_space\n"
        "free_space.require = lambda *args: None  # the check passed; then others wrote\n"
        "source, target = Path(sys.argv[1]), Path(sys.argv[2])\n"
        "try:\n"
        "    disk_images.convert(source, 'qcow2', disk_images.inspect(source), target, 'raw',"
        " 2**30)\n"
        "except InsufficientStorage as error:\n"
        "    print(error.detail, sorted(p.name for p in target.parent.iterdir()))\n"
    )
    result = subprocess.run(
        [
            *on_small_disk(data_dir),
            str(BIN / "python"),
            "-c",
            code,
            str(source),
            str(data_dir / "out.raw"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert NOT_ENOUGH.match(result.stdout), result.stdout
    assert result.stdout.endswith(" []\n"), result.stdout


# --- a libvirt host whose storage pool is full ----------------------------------------------
# libvirt's test driver gives each pool 100 GiB and refuses a volume that does not fit, as
# a real host does when its filesystem is full: the job ends in `error` with the host's words.


@pytest.fixture
def cloud(client: TestClient, keys: Keys, test_host_uri, make_disk: Callable[..., Path]) -> Cloud:  # type: ignore[no-untyped-def]
    return build_cloud(client, keys, test_host_uri(), make_disk)


def test_a_volume_the_host_has_no_room_for_ends_in_error(cloud: Cloud) -> None:
    volume = create(cloud, size_gib=200)
    failed = wait_volume(cloud, volume["id"], "error")
    assert "Not enough free space in pool" in failed["state_reason"], failed
    assert cloud.client.get("/healthz").status_code == 200


def test_a_launch_whose_disk_the_host_has_no_room_for_ends_in_error(cloud: Cloud) -> None:
    instance = cloud.launch(volumes=[{"size_gib": 200}])
    failed = cloud.wait_for(instance["id"], "error")
    assert "Not enough free space in pool" in failed["state_reason"], failed
    # The next launch that fits is not held back by it.
    cloud.wait_for(cloud.launch()["id"], "running")

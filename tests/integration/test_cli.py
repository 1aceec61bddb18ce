"""`vdc-manage` and `vdc` driven as an operator would: real processes, real image files."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from tests.conftest import bearer

BIN = Path(sys.executable).parent


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    """The CLI is the same code on both engines; SQLite keeps these process-heavy tests quick
    (test_cli_on_postgres below covers PostgreSQL)."""
    return sqlite_url


def run(settings: Settings, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VDC_")} | {
        "VDC_DATA_DIR": str(settings.data_dir),
        "VDC_ALLOW_TEST_HOSTS": "true",  # test:// hosts
        "VDC_DATABASE_URL": settings.effective_database_url,
        "VDC_IMPORT_DIRS": settings.import_dirs,
        "VDC_MAX_IMAGE_SIZE": str(settings.max_image_size),
        "COLUMNS": "200",
    }
    result = subprocess.run(
        [str(BIN / args[0]), *args[1:]], env=env, capture_output=True, text=True, timeout=120
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def add_local(
    settings: Settings, path: Path, *extra: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return run(settings, "vdc-manage", "image", "add", "local", str(path), *extra, check=check)


WAKAME_FORM = (
    "--arch",
    "x86_64",
    "--account-id",
    "a-shpoolxx",
    "--description",
    "Ubuntu 10.04 64bit",
)


class TestImageAddLocal:
    def test_wakame_form_registers_qcow2_and_prints_only_the_id(
        self, settings: Settings, make_disk: Callable[..., Path], client: TestClient
    ) -> None:
        disk = make_disk("ubuntu10.04-amd64.qcow2", "qcow2", "2G")
        result = add_local(settings, disk, *WAKAME_FORM, "--is-public", "--display-name", "lucid")
        image_id = result.stdout.strip()
        assert image_id.startswith("wmi-") and len(image_id) == 12, result.stdout
        assert "copying" in result.stderr  # the progress bar

        shown = run(settings, "vdc-manage", "image", "show", image_id, "--json").stdout
        assert '"format": "qcow2"' in shown
        assert f'"virtual_size": {2 * 1024**3}' in shown
        assert f'"sha256": "{hashlib.sha256(disk.read_bytes()).hexdigest()}"' in shown
        assert '"description": "Ubuntu 10.04 64bit"' in shown
        # A public a-shpoolxx image is what every account sees through the API.
        user_key = (
            run(settings, "vdc-manage", "account", "add", "alice")
            .stdout.split("api_key: ")[1]
            .strip()
        )
        listed = client.get("/api/v1/images", headers=bearer(user_key)).json()
        assert [i["id"] for i in listed["items"]] == [image_id]
        assert disk.exists()  # the operator's file is copied, never moved

    def test_raw_image_and_conversion(
        self, settings: Settings, make_disk: Callable[..., Path]
    ) -> None:
        raw = make_disk("disk.raw", "raw", "16M")
        kept = add_local(settings, raw, "--arch", "x86_64").stdout.strip()
        converted = add_local(
            settings, raw, "--arch", "x86_64", "--convert", "qcow2"
        ).stdout.strip()
        listing = run(settings, "vdc-manage", "image", "list").stdout
        assert f"{kept}  a-shpoolxx  x86_64  raw" in listing
        assert f"{converted}  a-shpoolxx  x86_64  qcow2" in listing
        assert (settings.image_dir / f"{converted}.qcow2").exists()

    @pytest.mark.parametrize(
        ("prepare", "args", "message"),
        [
            (
                lambda d, imp: Path("/etc/hostname"),
                ("--arch", "x86_64"),
                "outside the import directories",
            ),
            (lambda d, imp: imp / "missing.qcow2", ("--arch", "x86_64"), "no such file"),
            (lambda d, imp: d("a.qcow2"), ("--arch", "sparc"), "unknown arch 'sparc'"),
            (
                lambda d, imp: d("a.qcow2"),
                ("--arch", "x86_64", "--account-id", "a-nobody00"),
                "account a-nobody00 not found",
            ),
            (
                lambda d, imp: d("a.qcow2"),
                ("--arch", "x86_64", "--convert", "vmdk"),
                "cannot convert to 'vmdk'",
            ),
            (
                lambda d, imp: _write(imp / "notes.txt", b"not a disk\n"),
                ("--arch", "x86_64"),
                "is not a disk image",
            ),
            (
                lambda d, imp: _write(imp / "a.tar.gz", b"\x1f\x8b" + bytes(510)),
                ("--arch", "x86_64"),
                "gzip archive",
            ),
            (lambda d, imp: _overlay(d), ("--arch", "x86_64"), "has a backing file"),
            (lambda d, imp: imp, ("--arch", "x86_64"), "not a regular file"),
            (lambda d, imp: d("huge.raw", "raw", "300M"), ("--arch", "x86_64"), "over the limit"),
        ],
        ids=[
            "outside-import-dir",
            "missing",
            "arch",
            "account",
            "convert",
            "text",
            "gzip",
            "backing",
            "directory",
            "too-big",
        ],
    )
    def test_refusals_are_one_clear_line_and_leave_nothing(
        self,
        settings: Settings,
        make_disk: Callable[..., Path],
        import_dir: Path,
        prepare,
        args,
        message: str,
    ) -> None:
        path = prepare(make_disk, import_dir)
        result = add_local(settings, path, *args, check=False)
        assert result.returncode == 1
        assert message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        assert result.stdout.strip() == ""
        images_left = list(settings.image_dir.iterdir()) if settings.image_dir.exists() else []
        assert images_left == []

    def test_symlink_out_of_the_import_dir_is_refused(
        self, settings: Settings, import_dir: Path
    ) -> None:
        (import_dir / "sneaky.raw").symlink_to("/etc/hostname")
        result = add_local(settings, import_dir / "sneaky.raw", "--arch", "x86_64", check=False)
        assert result.returncode == 1
        assert "outside the import directories" in result.stderr

    def test_shell_metacharacters_in_a_path_are_just_data(
        self, settings: Settings, make_disk: Callable[..., Path], tmp_path: Path
    ) -> None:
        disk = make_disk("$(touch pwned); `id`.qcow2")
        image_id = add_local(settings, disk, "--arch", "x86_64").stdout.strip()
        assert image_id.startswith("wmi-")
        assert not (Path.cwd() / "pwned").exists() and not (tmp_path / "pwned").exists()


class TestImageLifecycle:
    def test_update_and_delete(self, settings: Settings, make_disk: Callable[..., Path]) -> None:
        image_id = add_local(
            settings, make_disk("a.qcow2"), "--arch", "x86_64", "--description", "as added"
        ).stdout.strip()

        def show() -> dict[str, object]:
            shown = run(settings, "vdc-manage", "image", "show", image_id, "--json").stdout
            return dict(json.loads(shown))

        before = show()
        assert (before["display_name"], before["description"], before["is_public"]) == (
            image_id,
            "as added",
            False,
        )
        updated = run(
            settings,
            "vdc-manage",
            "image",
            "update",
            image_id,
            "--display-name",
            "lucid",
            "--public",
        )
        assert updated.stdout == f"updated {image_id}\n"
        after = show()
        # Exactly the two fields asked for changed (and updated_at); the rest is as it was.
        assert after["updated_at"] >= before["updated_at"]  # type: ignore[operator]
        unchanged = {k: v for k, v in before.items() if k != "updated_at"}
        assert {**after, "updated_at": None} == {
            **unchanged,
            "display_name": "lucid",
            "is_public": True,
            "updated_at": None,
        }
        run(settings, "vdc-manage", "image", "update", image_id, "--private")
        assert {k: show()[k] for k in ("display_name", "description", "is_public")} == {
            "display_name": "lucid",
            "description": "as added",
            "is_public": False,
        }
        run(settings, "vdc-manage", "image", "del", image_id)
        missing = run(settings, "vdc-manage", "image", "show", image_id, check=False)
        assert missing.returncode == 1 and f"image {image_id} not found" in missing.stderr
        assert list(settings.image_dir.iterdir()) == []

    def test_metadata_drive_default_on_add_and_update(
        self, settings: Settings, make_disk: Callable[..., Path]
    ) -> None:
        disk = make_disk("wakame.qcow2")
        image_id = add_local(settings, disk, "--arch", "x86_64", "--metadata-drive").stdout
        shown = json.loads(
            run(settings, "vdc-manage", "image", "show", image_id.strip(), "--json").stdout
        )
        assert shown["metadata_drive"] is True
        run(settings, "vdc-manage", "image", "update", image_id.strip(), "--no-metadata-drive")
        shown = json.loads(
            run(settings, "vdc-manage", "image", "show", image_id.strip(), "--json").stdout
        )
        assert shown["metadata_drive"] is False
        helped = run(settings, "vdc-manage", "image", "update", "--help").stdout
        assert "--metadata-drive" in helped and "--no-metadata-drive" in helped


class TestAccounts:
    def test_add_prints_a_key_once_that_works(self, settings: Settings, client: TestClient) -> None:
        result = run(settings, "vdc-manage", "account", "add", "ops", "--admin")
        lines = dict(line.split(": ", 1) for line in result.stdout.strip().splitlines())
        assert lines["account_id"].startswith("a-")
        assert "only once" in result.stderr
        me = client.get("/api/v1/accounts/me", headers=bearer(lines["api_key"])).json()
        assert me == {**me, "id": lines["account_id"], "is_admin": True}
        listing = run(settings, "vdc-manage", "account", "list").stdout
        assert "ops" in listing and lines["api_key"] not in listing
        again = run(settings, "vdc-manage", "account", "add", "ops", check=False)
        assert again.returncode == 1 and "already exists" in again.stderr

    def test_key_command_issues_another_working_key(
        self, settings: Settings, client: TestClient
    ) -> None:
        run(settings, "vdc-manage", "account", "add", "ops")
        second = (
            run(settings, "vdc-manage", "account", "key", "ops")
            .stdout.split("api_key: ")[1]
            .strip()
        )
        assert client.get("/api/v1/accounts/me", headers=bearer(second)).json()["name"] == "ops"

    def test_delete(self, settings: Settings) -> None:
        run(settings, "vdc-manage", "account", "add", "temp")
        run(settings, "vdc-manage", "account", "del", "temp")
        assert "temp" not in run(settings, "vdc-manage", "account", "list").stdout
        refused = run(settings, "vdc-manage", "account", "del", "a-shpoolxx", check=False)
        assert refused.returncode == 1 and "system account" in refused.stderr


def test_unmigrated_database_is_refused_with_a_clear_message(
    tmp_path: Path, import_dir: Path
) -> None:
    fresh = Settings(data_dir=tmp_path / "fresh", import_dirs=str(import_dir))
    for command in (("vdc-manage", "account", "list"), ("vdc", "serve")):
        result = run(fresh, *command, check=False)
        assert result.returncode == 2
        assert "run `vdc migrate` first" in result.stderr
        assert "Traceback" not in result.stderr
    migrated = run(fresh, "vdc", "migrate").stdout
    assert "migrated from empty to revision" in migrated
    assert "already at revision" in run(fresh, "vdc", "migrate").stdout
    assert "a-shpoolxx" in run(fresh, "vdc-manage", "account", "list").stdout


def test_cli_on_postgres(
    postgres_url: str, tmp_path: Path, make_disk: Callable[..., Path], import_dir: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path / "pg", database_url=postgres_url, import_dirs=str(import_dir)
    )
    image_id = add_local(settings, make_disk("pg.qcow2"), *WAKAME_FORM).stdout.strip()
    assert image_id in run(settings, "vdc-manage", "image", "list").stdout


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def _overlay(make_disk: Callable[..., Path]) -> Path:
    base = make_disk("base.qcow2")
    return make_disk("overlay.qcow2", "qcow2", "64M", "-b", str(base), "-F", "qcow2")


class TestHostsNetworksInstances:
    """The operator's set-up as the e2e harness does it: host, network, image, by CLI."""

    def test_host_network_and_instance_commands(
        self, settings: Settings, make_disk: Callable[..., Path], client: TestClient, test_host_uri
    ) -> None:  # type: ignore[no-untyped-def]
        uri = test_host_uri("node1", cpus=8, memory_mib=8192)
        host_id = run(settings, "vdc-manage", "host", "add", "node1", "--uri", uri).stdout.strip()
        assert host_id.startswith("hn-")
        listing = run(settings, "vdc-manage", "host", "list").stdout
        assert f"{host_id}  node1" in listing and "online" in listing and "8192" in listing
        run(settings, "vdc-manage", "host", "disable", "node1")
        assert (
            "enabled           False" in run(settings, "vdc-manage", "host", "show", host_id).stdout
        )
        run(settings, "vdc-manage", "host", "enable", host_id)
        bad = run(
            settings,
            "vdc-manage",
            "host",
            "add",
            "x",
            "--uri",
            "test:///nonexistent/file.xml",
            check=False,
        )
        assert bad.returncode == 1 and "cannot read the capacity" in bad.stderr

        network_id = run(
            settings,
            "vdc-manage",
            "network",
            "add",
            "lan",
            "--cidr",
            "10.20.0.0/24",
            "--dns",
            "10.20.0.1",
            "--domain",
            "vdc.lan",
            "--default",
        ).stdout.strip()
        assert network_id.startswith("nw-")
        assert (
            "10.20.0.0/24  10.20.0.1  10.20.0.2   10.20.0.254"
            in run(settings, "vdc-manage", "network", "list").stdout
        )
        overlap = run(
            settings, "vdc-manage", "network", "add", "lan2", "--cidr", "10.20.0.0/16", check=False
        )
        assert overlap.returncode == 1 and "overlaps" in overlap.stderr

        image_id = add_local(
            settings, make_disk("g.qcow2"), *WAKAME_FORM, "--is-public"
        ).stdout.strip()
        key = (
            run(settings, "vdc-manage", "account", "add", "alice")
            .stdout.split("api_key: ")[1]
            .strip()
        )
        # The CLI's host lives in another process; this test's server reaches the same
        # test:// file, so launch through the API here and look at it from the CLI.
        launched = client.post(
            "/api/v1/instances",
            json={"image_id": image_id, "instance_type": "nano"},
            headers=bearer(key),
        ).json()
        assert launched["state"] == "pending", launched
        listed = run(settings, "vdc-manage", "instance", "list").stdout
        assert launched["id"] in listed and launched["ip_address"] in listed

        forced = run(
            settings,
            "vdc-manage",
            "instance",
            "force-state",
            launched["id"],
            "error",
            "--reason",
            "lost disk",
        )
        assert f"{launched['id']} is now error" in forced.stdout
        shown = run(settings, "vdc-manage", "instance", "show", launched["id"]).stdout
        assert "lost disk" in shown and "error" in shown
        refused = run(settings, "vdc-manage", "network", "del", network_id, check=False)
        assert refused.returncode == 1 and "in use" in refused.stderr
        wrong = run(
            settings,
            "vdc-manage",
            "instance",
            "force-state",
            launched["id"],
            "sleeping",
            check=False,
        )
        assert wrong.returncode == 2 and "sleeping" in wrong.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("network", "add", "bad name!", "--cidr", "10.0.0.0/24"), "name: String should match"),
        (("host", "add", "bad name!", "--uri", "test:///default"), "name: String should match"),
        (("volume", "create", "--account-id", "a-shpoolxx", "--size", "0M"), "size_mib"),
        (("securitygroup", "create", "bad name!", "--account-id", "a-shpoolxx"), "name:"),
    ],
)
def test_refused_options_are_one_line_not_a_traceback(
    settings: Settings, args: tuple[str, ...], words: str
) -> None:
    result = run(settings, "vdc-manage", *args, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and words in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1

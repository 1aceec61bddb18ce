"""`vdc-manage keypair ...` driven as an operator would: real processes, real key files."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from app.config import Settings
from app.models.instance import InstanceState
from tests.integration.test_api_keypairs import add_instance

BIN = Path(sys.executable).parent


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    """The CLI is the same code on both engines; the API suite covers PostgreSQL."""
    return sqlite_url


def run(
    *args: str, settings: Settings, check: bool = True, group: str = "keypair"
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VDC_")} | {
        "VDC_DATA_DIR": str(settings.data_dir),
        "VDC_ALLOW_TEST_HOSTS": "true",  # test:// hosts
        "VDC_DATABASE_URL": settings.effective_database_url,
        "COLUMNS": "200",
    }
    result = subprocess.run(
        [str(BIN / "vdc-manage"), group, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def refused(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode == 1, result.stdout
    assert fragment in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def account_id(settings: Settings) -> str:
    added = run("add", "alice", settings=settings, group="account")
    return added.stdout.split("account_id: ")[1].split()[0]


def public_line(comment: str = "alice@laptop") -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return f"{line.decode()} {comment}"


class TestImport:
    def test_import_list_show_delete(
        self, settings: Settings, account_id: str, tmp_path: Path
    ) -> None:
        line = public_line()
        pub = tmp_path / "id_ed25519.pub"
        pub.write_text(line + "\n")
        keypair_id = run(
            "import",
            "laptop",
            "--account-id",
            account_id,
            "--public-key-file",
            str(pub),
            settings=settings,
        ).stdout.strip()
        assert keypair_id.startswith("ssh-") and len(keypair_id) == 12

        listed = run("list", settings=settings).stdout.splitlines()
        assert listed[0].split() == ["ID", "ACCOUNT_ID", "NAME", "KEY_TYPE", "FINGERPRINT"]
        assert listed[1].split()[:4] == [keypair_id, account_id, "laptop", "ssh-ed25519"]
        assert listed[1].split()[4].startswith("SHA256:")

        shown = run("show", keypair_id, settings=settings).stdout
        assert f"public_key   {line}" in shown

        assert run("del", keypair_id, settings=settings).stdout.strip() == f"deleted {keypair_id}"
        refused(run("show", keypair_id, settings=settings, check=False), "not found")

    def test_key_as_text_and_account_by_name(self, settings: Settings, account_id: str) -> None:
        line = public_line(comment="")
        run("import", "deploy", "--account-id", "alice", "--public-key", line, settings=settings)
        shown = run("list", "--account-id", "alice", settings=settings).stdout.splitlines()
        assert len(shown) == 2 and "deploy" in shown[1]
        assert run("list", "--account-id", "a-shpoolxx", settings=settings).stdout.count("\n") == 1

    def test_refusals_are_one_clear_line(
        self, settings: Settings, account_id: str, tmp_path: Path
    ) -> None:
        small = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
        weak = small.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ).decode()
        base = ("import", "k", "--account-id", account_id)
        cases = [
            ((*base,), "exactly one of --public-key-file and --public-key"),
            ((*base, "--public-key", weak, "--public-key-file", "x"), "exactly one of"),
            ((*base, "--public-key", weak), "RSA keys must be at least 2048 bits"),
            ((*base, "--public-key-file", str(tmp_path / "nope.pub")), "cannot read"),
            (("import", "k", "--account-id", "nobody", "--public-key", public_line()), "account"),
        ]
        for args, fragment in cases:
            refused(run(*args, settings=settings, check=False), fragment)
        run(*base, "--public-key", public_line(), settings=settings)
        refused(
            run(*base, "--public-key", public_line(), settings=settings, check=False), "already"
        )


class TestGenerate:
    def test_private_key_file_is_new_0600_and_matches(
        self, settings: Settings, account_id: str, tmp_path: Path
    ) -> None:
        path = tmp_path / "deploy.key"
        keypair_id = run(
            "generate",
            "deploy",
            "--account-id",
            account_id,
            "--type",
            "ecdsa-sha2-nistp256",
            "--private-key-file",
            str(path),
            settings=settings,
        ).stdout.strip()
        assert keypair_id.startswith("ssh-")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        private = serialization.load_ssh_private_key(path.read_bytes(), None)
        public = private.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        shown = run("show", keypair_id, settings=settings).stdout
        assert f"public_key   {public.decode()} deploy" in shown
        assert "ecdsa-sha2-nistp256" in shown

        # An existing file is never overwritten, and no key pair is made for nothing.
        before = path.read_bytes()
        again = run(
            "generate",
            "other",
            "--account-id",
            account_id,
            "--private-key-file",
            str(path),
            settings=settings,
            check=False,
        )
        refused(again, "cannot create")
        assert path.read_bytes() == before
        assert "other" not in run("list", settings=settings).stdout

    def test_without_a_file_the_key_goes_to_stdout(
        self, settings: Settings, account_id: str
    ) -> None:
        result = run("generate", "k", "--account-id", account_id, settings=settings)
        private = serialization.load_ssh_private_key(result.stdout.encode(), None)
        assert isinstance(private, ed25519.Ed25519PrivateKey)
        assert "only once" in result.stderr and "SHA256:" in result.stderr

    def test_refused_generation_leaves_no_file(
        self, settings: Settings, account_id: str, tmp_path: Path
    ) -> None:
        run("generate", "k", "--account-id", account_id, settings=settings)
        path = tmp_path / "k.key"
        taken = run(
            "generate",
            "k",
            "--account-id",
            account_id,
            "--private-key-file",
            str(path),
            settings=settings,
            check=False,
        )
        refused(taken, "already has a key pair named 'k'")
        assert not path.exists()
        bad_type = run(
            "generate",
            "j",
            "--account-id",
            account_id,
            "--type",
            "ssh-dss",
            settings=settings,
            check=False,
        )
        refused(bad_type, "cannot generate 'ssh-dss'")


def test_del_is_refused_while_a_live_instance_uses_the_key(
    settings: Settings, account_id: str, engine: sa.Engine
) -> None:
    line = public_line()
    keypair_id = run(
        "import", "k", "--account-id", account_id, "--public-key", line, settings=settings
    ).stdout.strip()
    instance_id = add_instance(engine, account_id, keypair_id, InstanceState.running)
    result = run("del", keypair_id, settings=settings, check=False)
    refused(result, f"used by instance(s) {instance_id}")

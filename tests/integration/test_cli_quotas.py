"""`vdc-manage account quota` driven as an operator would: real processes, on SQLite (the
API suite covers PostgreSQL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import Settings

BIN = Path(sys.executable).parent
ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    return sqlite_url


def manage(
    settings: Settings, *args: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VDC_")} | {
        "VDC_DATA_DIR": str(settings.data_dir),
        "VDC_DATABASE_URL": settings.effective_database_url,
        "COLUMNS": "200",
        **(env or {}),
    }
    result = subprocess.run(
        [str(BIN / "vdc-manage"), *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def refused(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 1, result.stdout
    assert result.stderr.strip() == f"error: {message}"


def rows(shown: str) -> dict[str, list[str]]:
    """QUOTA -> [LIMIT, USED, SOURCE] of `account quota`'s table."""
    return {line.split()[0]: line.split()[1:] for line in shown.splitlines()[2:]}


def test_show_set_and_reset_a_quota(settings: Settings) -> None:
    account_id = manage(settings, "account", "add", "alice").stdout.split()[1]
    manage(
        settings, "keypair", "import", "laptop", "--account-id", "alice", "--public-key", ED25519
    )
    shown = manage(settings, "account", "quota", "alice").stdout.splitlines()
    assert shown[0] == f"account_id: {account_id}"
    assert [line.split() for line in shown[1:]] == [
        ["QUOTA", "LIMIT", "USED", "SOURCE"],
        ["instances", "20", "0", "default"],
        ["cores", "64", "0", "default"],
        ["memory_mib", "131072", "0", "default"],
        ["volume_gib", "2048", "0", "default"],
        ["images", "20", "0", "default"],
        ["image_gib", "512", "0", "default"],
        ["security_groups", "50", "0", "default"],
        ["key_pairs", "50", "1", "default"],
    ]
    changed = manage(
        settings,
        "account",
        "quota",
        account_id,
        "--instances",
        "5",
        "--cores",
        "unlimited",
        "--key-pairs",
        "0",
        "--json",
    )
    quota = json.loads(changed.stdout)
    assert quota["instances"] == {"limit": 5, "used": 0, "is_default": False}
    assert quota["cores"]["limit"] == -1 and quota["images"]["is_default"]
    # Only what is given changes; `default` puts one back.
    manage(settings, "account", "quota", "alice", "--instances", "default", "--images", "-1")
    shown_now = rows(manage(settings, "account", "quota", "alice").stdout)
    assert shown_now["instances"] == ["20", "0", "default"]
    assert shown_now["cores"] == ["unlimited", "0", "set"]
    assert shown_now["images"] == ["unlimited", "0", "set"]
    assert shown_now["key_pairs"] == ["0", "1", "set"]
    # vdc-manage creates for the owner account and its quota holds there too.
    refused(
        manage(
            settings,
            "keypair",
            "generate",
            "deploy",
            "--account-id",
            "alice",
            check=False,
        ),
        "quota exceeded: 0 key pairs allowed, 1 in use, 1 asked (ask an admin to raise it)",
    )


def test_defaults_come_from_the_environment(settings: Settings) -> None:
    manage(settings, "account", "add", "alice")
    shown = manage(
        settings, "account", "quota", "alice", env={"VDC_QUOTA_SECURITY_GROUPS": "-1"}
    ).stdout
    assert rows(shown)["security_groups"] == ["unlimited", "0", "default"]
    refused(
        manage(
            settings,
            "securitygroup",
            "create",
            "web",
            "--account-id",
            "alice",
            check=False,
            env={"VDC_QUOTA_SECURITY_GROUPS": "0"},
        ),
        "quota exceeded: 0 security groups allowed, 0 in use, 1 asked (ask an admin to raise it)",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--instances", "many"), "--instances 'many': give a number, unlimited or default"),
        (
            ("--volume-gib", "-2"),
            "--volume-gib '-2': give -1 (unlimited) or a number from 0 to 2147483647",
        ),
    ],
)
def test_bad_values_are_one_red_line(
    settings: Settings, args: tuple[str, ...], message: str
) -> None:
    manage(settings, "account", "add", "alice")
    refused(manage(settings, "account", "quota", "alice", *args, check=False), message)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("a-nobody00",), "account a-nobody00 not found"),
        (
            ("a-shpoolxx", "--images", "3"),
            "a-shpoolxx is the system account: no quota applies to it",
        ),
    ],
)
def test_unknown_and_system_accounts_are_refused(
    settings: Settings, args: tuple[str, ...], message: str
) -> None:
    refused(manage(settings, "account", "quota", *args, check=False), message)


def test_the_system_account_shows_as_exempt(settings: Settings) -> None:
    shown = manage(settings, "account", "quota", "a-shpoolxx").stdout
    assert rows(shown)["instances"] == ["unlimited", "0", "exempt"]

"""`vdc-manage securitygroup ...` as an operator runs it (real processes)."""

from __future__ import annotations

import pytest

from app.config import Settings
from tests.integration.test_cli_keypairs import account_id, refused, run  # noqa: F401


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    """The CLI is the same code on both engines; the API suite covers PostgreSQL."""
    return sqlite_url


def sg(*args: str, settings: Settings, check: bool = True):  # type: ignore[no-untyped-def]
    return run(*args, settings=settings, check=check, group="securitygroup")


def test_create_show_update_list_delete(settings: Settings, account_id: str, tmp_path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    group_id = sg(
        "create",
        "web",
        "--account-id",
        account_id,
        "--description",
        "the web tier",
        "--rule",
        "tcp:22,22,ip4:0.0.0.0/0",
        "--rule",
        "icmp:-1,-1,ip4:10.0.0.0/8",
        settings=settings,
    ).stdout.strip()
    assert group_id.startswith("sg-")
    shown = sg("show", group_id, settings=settings).stdout
    assert "the web tier" in shown
    assert "  tcp:22,22,ip4:0.0.0.0/0\n  icmp:-1,-1,ip4:10.0.0.0/8\n" in shown

    rules = tmp_path / "web.rules"
    rules.write_text(f"# from the app tier only\ntcp:8080,8080,{group_id}\n")
    sg("update", group_id, "--rules-file", str(rules), "--name", "www", settings=settings)
    shown = sg("show", group_id, settings=settings).stdout
    assert f"  tcp:8080,8080,{group_id}\n" in shown and "www" in shown

    listed = sg("list", "--account-id", account_id, settings=settings).stdout
    names = sorted(line.split()[2] for line in listed.splitlines()[1:])
    assert names == ["default", "www"]
    assert sg("del", group_id, settings=settings).stdout.strip() == f"deleted {group_id}"


def test_refusals_are_one_clear_line(settings: Settings, account_id: str) -> None:  # noqa: F811
    for args, words in (
        (
            ("create", "g", "--account-id", account_id, "--rule", "tcp:22,70000,ip4:0.0.0.0/0"),
            "line 1 ('tcp:22,70000,ip4:0.0.0.0/0'): tcp port 70000 is out of range",
        ),
        (
            ("create", "g", "--account-id", account_id, "--rule", "tcp:22,22,sg-nothere1"),
            "source group(s) sg-nothere1 not found",
        ),
        (("create", "bad name!", "--account-id", account_id), "String should match pattern"),
        (("create", "g", "--account-id", "nobody"), "account nobody not found"),
        (
            ("create", "g", "--account-id", account_id, "--rules-file", "/nonexistent"),
            "cannot read /nonexistent",
        ),
        (("show", "sg-nothere1"), "security group sg-nothere1 not found"),
        (("del", "sg-nothere1"), "security group sg-nothere1 not found"),
    ):
        refused(sg(*args, settings=settings, check=False), words)
    listed = sg("list", "--account-id", account_id, settings=settings).stdout
    default_id = listed.splitlines()[1].split()[0]
    refused(
        sg("del", default_id, settings=settings, check=False), "default group cannot be deleted"
    )

"""A person who does not want curl runs vdc from the browser: sign in, upload an image,
launch with user-data, watch it run, read its console, stop and terminate it; the other
pages do their jobs, and every refusal shows next to the field it concerns.

Screenshots of the main pages go to .artifacts/screenshots/; `make screenshots` refreshes the
README's, in docs/screenshots/ (tests/ui/conftest.py).
"""

from __future__ import annotations

import re
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Locator, Page, expect
from sqlmodel import col

from app.models import Image
from metadata.app import create_metadata_app
from tests.ui.conftest import Site, screenshot, sign_in

USER_DATA = "#!/bin/sh\necho 'hello from the web UI' > /tmp/ui\n# ünïcode counts in bytes\n"


def make_image(tmp_path: Path) -> Path:
    path = tmp_path / "guest.qcow2"
    subprocess.run(["qemu-img", "create", "-f", "qcow2", str(path), "64M"], check=True)
    return path


def upload_image(page: Page, path: Path, name: str = "busybox guest") -> str:
    page.goto("/images")
    page.get_by_label("Disk image file").set_input_files(str(path))
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Public").check()
    page.get_by_role("button", name="Upload").click()
    page.wait_for_url(re.compile(r"/images\?notice=registered"))
    notice = page.get_by_role("status").first.inner_text()
    return re.search(r"wmi-[a-z0-9]{8}", notice).group(0)  # type: ignore[union-attr]


def wait_state(page: Page, state: str, timeout: float = 60_000) -> None:
    expect(page.locator(".facts .live-state")).to_have_text(state, timeout=timeout)


def reload_until(page: Page, path: str, locator: Locator, text: str, timeout: float = 60) -> None:
    """Loads the page again until the locator's text holds `text` (the page does not follow
    this by itself); fails, saying what it saw, if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        page.goto(path)
        seen = locator.inner_text()
        if text in seen:
            return
        assert time.monotonic() < deadline, (
            f"{path}: still {seen!r} after {timeout}s, wanted {text!r}"
        )
        page.wait_for_timeout(250)


def test_sign_in_launch_watch_console_stop_terminate(page: Page, site: Site, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Signing in: a wrong key is refused next to the field; the keyboard alone suffices.
    page.goto("/instances")
    page.wait_for_url(re.compile(r"/login\?next=/instances"))
    page.get_by_label("API key").fill("vdc_not-a-key")
    page.keyboard.press("Enter")
    expect(page.locator("#api_key-error")).to_have_text("this API key is not valid")
    expect(page.get_by_label("API key")).to_have_attribute("aria-invalid", "true")
    screenshot(page, "sign-in")
    page.get_by_label("API key").fill(site.admin_key)
    page.keyboard.press("Enter")
    page.wait_for_url("**/instances")
    cookie = next(c for c in page.context.cookies() if c["name"] == "vdc_session")
    assert cookie["httpOnly"] and site.admin_key not in cookie["value"]

    image_id = upload_image(page, make_image(tmp_path))
    expect(page.get_by_role("link", name=image_id)).to_be_visible()
    screenshot(page, "images")

    # Launch with user-data; the size counter follows the text in bytes.
    page.goto("/instances/new")
    page.get_by_label("Image").select_option(image_id)
    page.get_by_label("Instance type").select_option("nano")
    page.get_by_label("Hostname").fill("web-ui-1")
    page.get_by_label("Name", exact=True).fill("from the browser")
    page.get_by_label("User data").fill(USER_DATA)
    expect(page.locator("[data-byte-count-for=user_data]")).to_have_text(
        str(len(USER_DATA.encode()))
    )
    expect(page.get_by_label("default")).to_be_checked()
    screenshot(page, "launch")
    page.get_by_role("button", name="Launch").click()
    page.wait_for_url(re.compile(r"/instances/i-[a-z0-9]{8}\?notice="))
    instance_id = re.search(r"i-[a-z0-9]{8}", page.url).group(0)  # type: ignore[union-attr]
    wait_state(page, "running")  # the page follows the state by itself
    expect(page.locator(".facts .live-ip")).to_have_text(re.compile(r"10\.20\.0\.\d+"))
    address = page.locator(".facts .live-ip").inner_text()
    screenshot(page, "instance")

    # What the guest will read from the metadata service is what was typed.
    metadata = TestClient(
        create_metadata_app(site.engine, "vdc-1"),
        base_url="http://10.20.0.1:8775",
        client=(address, 40000),
    )
    assert metadata.get("/latest/user-data").content == USER_DATA.encode()
    assert metadata.get("/latest/meta-data/hostname").text.startswith("web-ui-1")

    page.get_by_role("link", name="Console output").click()
    expect(page.get_by_label("Serial console output")).to_be_visible()
    screenshot(page, "console")
    page.get_by_role("link", name=instance_id).click()

    # Stop asks first; declining changes nothing.
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Stop").click()
    wait_state(page, "running")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Stop").click()
    wait_state(page, "stopped")
    expect(page.get_by_role("button", name="Start")).to_be_enabled()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Terminate").click()
    wait_state(page, "terminated")

    page.goto("/instances")
    row = page.locator(f"tr[data-id={instance_id}]")
    expect(row.locator(".live-state")).to_have_text("terminated")
    screenshot(page, "instances")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    expect(page.get_by_role("link", name="Launch instance")).to_be_visible()
    screenshot(page, "instances-phone")


def test_a_failed_launch_shows_why_next_to_the_field(
    page: Page, site: Site, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    sign_in(page, site.admin_key)
    image_id = upload_image(page, make_image(tmp_path))
    page.goto("/instances/new")
    page.get_by_role("button", name="Launch").click()
    expect(page.locator("#image_id-error")).to_have_text("choose an image")

    page.get_by_label("Image").select_option(image_id)
    page.get_by_label("Hostname").fill("not_a_hostname!")
    page.get_by_role("button", name="Launch").click()
    expect(page.locator("#hostname-error")).to_contain_text("should match pattern")
    expect(page.get_by_label("Image")).to_have_value(image_id)  # what was typed stays

    page.get_by_label("Hostname").fill("big")
    page.get_by_label("User data").fill("x" * 17_000)
    expect(page.locator("#user_data-size")).to_have_class(re.compile("field-error"))
    page.get_by_role("button", name="Launch").click()
    expect(page.locator("#user_data-error")).to_have_text("user data is limited to 16384 bytes")

    # The host has 1 GiB: an xlarge does not fit anywhere.
    page.get_by_label("User data").fill("")
    page.get_by_label("Instance type").select_option("xlarge")
    page.get_by_role("button", name="Launch").click()
    expect(page.locator(".form-error")).to_contain_text("no host has room")
    assert "application/json" not in (page.evaluate("document.contentType") or "")
    page.goto("/instances")
    expect(page.get_by_text("No instances yet")).to_be_visible()

    # A launch the host refuses ends in `error`, and the pages say why.
    from hypervisor.driver import HostDriver
    from hypervisor.errors import HypervisorError

    def refuse(self: HostDriver, spec: object) -> None:
        raise HypervisorError("cannot define domain: out of PCI slots")

    monkeypatch.setattr(HostDriver, "ensure_domain", refuse)
    page.goto("/instances/new")
    page.get_by_label("Image").select_option(image_id)
    page.get_by_label("Instance type").select_option("nano")
    page.get_by_role("button", name="Launch").click()
    wait_state(page, "error")
    expect(page.locator(".facts .reason")).to_contain_text("out of PCI slots")
    page.goto("/instances")
    expect(page.locator("tbody .reason")).to_contain_text("out of PCI slots")


def test_volumes_key_pairs_groups_and_admin_pages(page: Page, site: Site, tmp_path) -> None:  # type: ignore[no-untyped-def]
    sign_in(page, site.admin_key)
    image_id = upload_image(page, make_image(tmp_path))
    page.goto("/instances/new")
    page.get_by_label("Image").select_option(image_id)
    page.get_by_label("Instance type").select_option("nano")
    page.get_by_role("button", name="Launch").click()
    wait_state(page, "running")
    instance_id = re.search(r"i-[a-z0-9]{8}", page.url).group(0)  # type: ignore[union-attr]

    # Volumes: a refused size, then create, attach, detach, delete.
    page.goto("/volumes")
    page.get_by_label("Size (MiB)").fill("0")
    page.get_by_role("button", name="Create").click()
    expect(page.locator("#size_mib-error")).to_contain_text("greater than or equal to 1")
    page.get_by_label("Size (MiB)").fill("64")
    page.get_by_label("Name", exact=True).fill("data")
    page.get_by_label("Place it next to").select_option(instance_id)
    page.get_by_role("button", name="Create").click()
    volume_id = re.search(r"vol-[a-z0-9]{8}", page.url).group(0)  # type: ignore[union-attr]
    row = page.locator("tr", has_text=volume_id)
    reload_until(page, "/volumes", row, "available")  # created by the worker in the background
    row.get_by_role("button", name="Attach").click()
    reload_until(page, "/volumes", row, "attached")
    expect(row).to_contain_text(f"{instance_id} as vdb")
    screenshot(page, "volumes")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Detach").click()
    reload_until(page, "/volumes", row, "available")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Delete").click()
    page.wait_for_url(re.compile(r"notice=deleting"))

    # Key pairs: a generated private key downloads once; a bad public key is refused.
    page.goto("/keypairs")
    page.locator("#generate-name").fill("deploy")
    with page.expect_download() as download:
        page.get_by_role("button", name="Generate and download").click()
    saved = Path(download.value.path()).read_text()
    assert saved.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert download.value.suggested_filename == "deploy.pem"
    page.goto("/keypairs")
    expect(page.get_by_role("cell", name="deploy", exact=True)).to_be_visible()
    page.locator("#import-name").fill("laptop")
    page.locator("#import-key").fill("ssh-ed25519 not-base64!")
    page.get_by_role("button", name="Import").click()
    expect(page.locator("#import_public_key-error")).to_be_visible()
    screenshot(page, "keypairs")

    # Security groups: the rules editor refuses a bad line next to the box, saves a good one.
    page.goto("/security_groups")
    page.get_by_label("Name", exact=True).fill("web")
    page.get_by_label("Inbound rules").fill("tcp:22,22,ip4:0.0.0.0/0\ntcp:80,99999,ip4:0.0.0.0/0")
    page.get_by_role("button", name="Create").click()
    expect(page.locator("#rules_text-error")).to_contain_text("line 2")
    expect(page.locator("#rules_text-error")).to_contain_text("99999 is out of range")
    page.get_by_label("Inbound rules").fill("tcp:22,22,ip4:0.0.0.0/0\nicmp:-1,-1,ip4:10.0.0.0/8")
    page.get_by_role("button", name="Create").click()
    page.wait_for_url(re.compile(r"/security_groups/sg-"))
    expect(page.get_by_label("Inbound rules")).to_have_value(
        "tcp:22,22,ip4:0.0.0.0/0\nicmp:-1,-1,ip4:10.0.0.0/8\n"
    )
    screenshot(page, "security-group")
    page.goto("/security_groups")
    screenshot(page, "security-groups")

    # Admins: hosts and networks, with their refusals shown by the fields.
    page.goto("/hosts")
    expect(page.get_by_role("cell", name=re.compile("node1"))).to_be_visible()
    screenshot(page, "hosts")
    page.goto("/networks")
    page.get_by_label("Name", exact=True).fill("overlap")
    page.get_by_label("CIDR").fill("10.20.0.0/25")
    page.get_by_role("button", name="Add network").click()
    expect(page.locator(".form-error, #cidr-error")).to_contain_text("overlaps")
    screenshot(page, "networks")


def test_a_user_key_sees_no_admin_pages_and_no_other_accounts_things(
    page: Page, site: Site, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from app.db import session_scope
    from app.services.identity import accounts

    with session_scope(site.engine) as session:
        _, user_key = accounts.create_account(session, "alice")
    sign_in(page, site.admin_key)
    upload_image(page, make_image(tmp_path), name="admin's")
    page.goto("/instances/new")
    page.get_by_label("Image").select_option(index=1)
    page.get_by_role("button", name="Launch").click()
    wait_state(page, "running")
    admins_instance = re.search(r"i-[a-z0-9]{8}", page.url).group(0)  # type: ignore[union-attr]
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login")

    sign_in(page, user_key)
    expect(page.get_by_role("link", name="Hosts")).to_have_count(0)
    page.goto("/hosts")
    expect(page.get_by_role("alert")).to_have_text("this page is for admins")
    page.goto(f"/instances/{admins_instance}")
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    page.goto("/instances")
    expect(page.get_by_text("No instances yet")).to_be_visible()


def test_api_keys_issue_one_shown_once_and_revoke_the_one_signed_in_with(
    page: Page, site: Site
) -> None:
    from app.db import session_scope
    from app.services.identity import accounts

    with session_scope(site.engine) as session:
        _, first_key = accounts.create_account(session, "alice")
    sign_in(page, first_key)
    page.get_by_role("link", name="API keys").click()
    page.wait_for_url("**/api_keys")
    expect(page.get_by_text("(this sign-in)")).to_be_visible()
    page.get_by_label("Name").fill("laptop")
    page.get_by_role("button", name="Issue key").click()
    new_key = page.locator("#new-key").inner_text()
    assert new_key.startswith("vdc_") and new_key[:10] != first_key[:10]
    expect(page.get_by_role("cell", name="laptop", exact=True)).to_be_visible()
    screenshot(page, "api-keys")
    page.goto("/api_keys")
    expect(page.locator("#new-key")).to_have_count(0)  # shown once

    # Revoking asks first; the key this browser signed in with signs it out at once.
    row = page.locator("tr", has_text="(this sign-in)")
    page.once("dialog", lambda dialog: dialog.dismiss())
    row.get_by_role("button", name="Revoke").click()
    expect(page.get_by_text("(this sign-in)")).to_be_visible()
    questions: list[str] = []

    def accept(dialog) -> None:  # type: ignore[no-untyped-def]
        questions.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    row.get_by_role("button", name="Revoke").click()
    page.wait_for_url("**/login")
    assert "you are signed out" in questions[0]
    page.goto("/api_keys")
    page.wait_for_url(re.compile(r"/login\?next=/api_keys"))
    page.get_by_label("API key").fill(first_key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#api_key-error")).to_have_text("this API key was revoked")
    sign_in(page, new_key)
    page.goto("/api_keys")
    expect(page.locator("tr", has_text="laptop")).to_contain_text("(this sign-in)")
    expect(page.locator("tr", has_text="revoked")).to_have_count(1)


def test_timestamps_read_as_local_time_and_as_age(
    browser: Browser, site: Site, tmp_path: Path
) -> None:
    """A reader in New York sees New York time with its zone on a detail page and "3 min
    ago" in a list, the exact value on hover; without scripts, UTC and the age still read."""
    moment = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3, seconds=10)
    local = moment.astimezone(ZoneInfo("America/New_York"))
    exact_utc = f"{moment:%Y-%m-%d %H:%M:%S} UTC"
    context = browser.new_context(base_url=site.url, timezone_id="America/New_York", locale="en-US")
    page = context.new_page()
    sign_in(page, site.admin_key)
    image_id = upload_image(page, make_image(tmp_path))
    with site.engine.begin() as connection:
        connection.execute(
            sa.update(Image).where(col(Image.id) == image_id).values(created_at=moment)
        )

    page.goto("/images")
    created = page.get_by_role("row", name=re.compile(image_id)).locator("time")
    expect(created).to_have_text("3 min ago")
    title = created.get_attribute("title") or ""
    assert f"{local:%I:%M:%S}" in title and re.search(r"\bE[SD]T\b", title), title
    assert title.endswith(f"({exact_utc})"), title

    page.goto(f"/images/{image_id}")
    shown = page.locator("dt:has-text('Created') + dd time")
    expect(shown).to_have_text(
        re.compile(rf"{local:%b} {local.day}, {local:%Y}, {local:%I:%M:%S} [AP]M E[SD]T")
    )
    assert "UTC" not in shown.inner_text()
    context.close()

    # No script: the server's words, in UTC.
    plain = browser.new_context(base_url=site.url, java_script_enabled=False)
    page = plain.new_page()
    sign_in(page, site.admin_key)
    page.goto("/images")
    expect(page.get_by_role("row", name=re.compile(image_id)).locator("time")).to_have_text(
        "3 min ago"
    )
    page.goto(f"/images/{image_id}")
    shown = page.locator("dt:has-text('Created') + dd time")
    expect(shown).to_have_text(f"{moment:%Y-%m-%d %H:%M} UTC")
    expect(shown).to_have_attribute("title", exact_utc)
    plain.close()

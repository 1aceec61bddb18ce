"""The web UI in a real browser: `vdc`'s app served by uvicorn on a loopback port (its job
worker included) over a test:// libvirt host, driven by Playwright in Debian's Chromium.

Playwright cannot download its own browser here; it drives /usr/bin/chromium (installed
by `make test`), headless, with background networking off (no call leaves the machine).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
import uvicorn
from playwright.sync_api import Browser, Page, sync_playwright

from app.config import Settings
from app.db import make_engine, session_scope
from app.main import create_app
from app.models.host_node import HostNodeCreate
from app.models.network import NetworkCreate
from app.services import hosts
from app.services.identity import accounts
from app.services.network import networks
from tests.conftest import NODE_XML

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).parents[2]
# A test run leaves the checkout clean: its screenshots go to an ignored folder. The README's,
# in docs/screenshots/, change only when asked (`make screenshots` sets the variable).
SCREENSHOTS = (
    ROOT / "docs" / "screenshots"
    if os.environ.get("VDC_REFRESH_SCREENSHOTS")
    else ROOT / ".artifacts" / "screenshots"
)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    """The pages are the same code on both engines; the API suite covers PostgreSQL."""
    return sqlite_url


@dataclass
class Site:
    url: str
    admin_key: str
    engine: sa.Engine
    settings: Settings


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def site(settings: Settings, tmp_path: Path) -> Iterator[Site]:
    """vdc with an admin, a small test:// host (2 cores, 1 GiB) and a default network."""
    engine = make_engine(settings.effective_database_url)
    node = tmp_path / "ui-host.xml"
    node.write_text(NODE_XML.format(cpus=2, memory_kib=1024 * 1024))
    with session_scope(engine) as session:
        _, key = accounts.create_account(session, "operator", is_admin=True)
        hosts.add_host(session, settings, HostNodeCreate(name="node1", uri=f"test://{node}"))
        networks.create_network(
            session, NetworkCreate(name="lan", cidr="10.20.0.0/24", is_default=True)
        )
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the web server did not start"
        time.sleep(0.05)
    yield Site(f"http://127.0.0.1:{port}", key, engine, settings)
    server.should_exit = True
    thread.join(timeout=20)
    engine.dispose()


def chromium(who: str) -> Iterator[Browser]:
    """Debian's Chromium, headless, for the length of a fixture; `who` needs it."""
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{who} needs {CHROMIUM} (`make test` installs Debian's chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture(scope="package")  # closed after tests/ui: its event loop would outlive them
def browser() -> Iterator[Browser]:
    yield from chromium("the UI tests")


@pytest.fixture
def page(browser: Browser, site: Site) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=site.url)
    context.set_default_timeout(15_000)
    opened = context.new_page()
    yield opened
    context.close()


def sign_in(page: Page, key: str) -> None:
    page.goto("/login")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/instances")


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

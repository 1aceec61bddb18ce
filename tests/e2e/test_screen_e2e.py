"""The web UI's Screen view with a real guest, in Chromium: noVNC over vdc's WebSocket proxy
to the guest's VGA console (qemu's VNC server, inside the test's network namespace).

The test guest draws a known picture on its VGA console (a title and four colour bars,
see tests/e2e/guest/init.sh) and echoes every line typed there to its serial console: the
test reads noVNC's canvas for the bars, types through the browser and reads the line back
through the API's console output. Ctrl-Alt-Del reaches the guest; a reboot keeps the
connection; after a stop and a start (a new qemu, a new port) the page reconnects with a
new ticket.

The browser runs in the machine's root network namespace, vdc inside the test's: a small
forwarder joins a loopback port to `vdc serve`'s unix socket (unix sockets are not bound to
a network namespace), so no packet leaves loopback and the namespace.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.harness import E2E
from tests.ui.conftest import chromium, screenshot, sign_in

# The rows of noVNC's canvas that show the guest's colour bars: red, green, blue and white,
# each a run of at least 40 pixels (a bar is 8 cells of 9 pixels), in that order.
FIND_BARS = """() => {
  const canvas = document.querySelector("#screen canvas");
  if (!canvas || !canvas.width) return [];
  const { data, width, height } =
    canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
  const kind = (r, g, b) =>
    r > 120 && g < 60 && b < 60 ? "r" :
    g > 120 && r < 60 && b < 60 ? "g" :
    b > 120 && r < 60 && g < 60 ? "b" :
    r > 120 && Math.abs(r - g) < 30 && Math.abs(g - b) < 30 ? "w" : ".";
  const rows = [];
  for (let y = 0; y < height; y++) {
    let runs = "", last = "", count = 0;
    for (let x = 0; x <= width; x++) {
      const i = 4 * (y * width + x);
      const now = x < width ? kind(data[i], data[i + 1], data[i + 2]) : "";
      if (now === last) { count++; continue; }
      if (count >= 40) runs += last;
      last = now;
      count = 1;
    }
    if (runs.includes("rgbw")) rows.push(y);
  }
  return rows;
}"""


class LoopbackToSocket:
    """127.0.0.1:<port> in this namespace, forwarded byte for byte to a unix socket."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                browser_side, _ = self.listener.accept()
            except OSError:
                return
            vdc_side = socket.socket(socket.AF_UNIX)
            vdc_side.connect(self.path)
            for source, sink in ((browser_side, vdc_side), (vdc_side, browser_side)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from chromium("the screen test")


@pytest.fixture
def page(e2e: E2E, browser: Browser) -> Iterator[Page]:
    forwarder = LoopbackToSocket(str(e2e.run_dir / "api.sock"))
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=forwarder.url)
    context.set_default_timeout(30_000)
    yield context.new_page()
    context.close()
    forwarder.close()


def bar_rows(page: Page, timeout: float = 90) -> list[int]:
    """The canvas rows showing the guest's bars, once there are (the guest draws them
    about 3 s into its boot)."""
    deadline = time.monotonic() + timeout
    while True:
        rows: list[int] = page.evaluate(FIND_BARS)
        if len(rows) >= 12:  # a text row is 16 pixels high
            return rows
        assert time.monotonic() < deadline, f"no colour bars on the screen; rows: {rows}"
        time.sleep(0.5)


def type_line(page: Page, e2e: E2E, instance_id: str, text: str) -> None:
    page.locator("#screen canvas").click()
    page.keyboard.type(text)
    page.keyboard.press("Enter")
    e2e.wait_console(instance_id, rf"VDC-E2E typed {re.escape(text)}\n", timeout=30)


def test_the_screen_shows_the_guest_takes_its_keys_and_comes_back(e2e: E2E, page: Page) -> None:
    key = re.search(r"api_key: (\S+)", e2e.manage("account", "add", "screen-user"))
    assert key is not None
    user: dict[str, Any] = {"headers": {"Authorization": f"Bearer {key.group(1)}"}}
    assert e2e.api is not None
    launched = e2e.api.post(
        "/api/v1/instances",
        json={"image_id": e2e.image_id, "instance_type": "nano", "hostname": "e2e-screen"},
        **user,
    )
    assert launched.status_code == 202, launched.text
    instance_id = launched.json()["id"]
    e2e.wait_state(instance_id, "running")
    # The screen listens on the namespace's loopback, never on the guests' network.
    assert "<listen type='address' address='127.0.0.1'/>" in e2e.virsh("dumpxml", instance_id)

    sign_in(page, key.group(1))
    page.goto(f"/instances/{instance_id}")
    page.get_by_role("link", name="Screen").click()
    page.wait_for_url(f"**/instances/{instance_id}/screen")
    expect(page.locator("#screen")).to_have_attribute("data-state", "connected")
    rows = bar_rows(page)
    assert rows == list(range(rows[0], rows[0] + len(rows)))  # one band, one text row high
    screenshot(page, "screen")

    type_line(page, e2e, instance_id, "hello screen 42")

    # Ctrl-Alt-Del reaches the guest's kernel as that key combination (its init is told).
    page.get_by_role("button", name="Send Ctrl-Alt-Del").click()
    e2e.wait_console(instance_id, "VDC-E2E ctrl-alt-del", timeout=30)

    # A reboot keeps qemu, and the connection: the new boot draws again and takes keys.
    e2e.action(instance_id, "reboot")
    e2e.wait_console(instance_id, "VDC-E2E boot", count=2, timeout=90)
    e2e.wait_state(instance_id, "running")
    expect(page.locator("#screen")).to_have_attribute("data-state", "connected")
    bar_rows(page)
    type_line(page, e2e, instance_id, "after a reboot")

    # Stopped, the screen goes; started again (a new qemu on a new port), the page gets a
    # new ticket and shows it again by itself.
    e2e.action(instance_id, "stop")
    e2e.wait_state(instance_id, "stopped", timeout=90)
    expect(page.locator("#screen")).not_to_have_attribute("data-state", "connected")
    expect(page.get_by_role("status")).to_contain_text("stopped")
    e2e.action(instance_id, "start")
    e2e.wait_state(instance_id, "running")
    expect(page.locator("#screen")).to_have_attribute("data-state", "connected", timeout=60_000)
    bar_rows(page)
    type_line(page, e2e, instance_id, "after a restart")

    e2e.terminate(instance_id)
    e2e.wait_state(instance_id, "terminated")

"""vdc's console proxy against a stand-in for qemu's VNC server: a real TCP server on
loopback that speaks RFB 3.8 with VNC authentication, where a test:// domain's screen
says it is. The client gets RFB with no authentication, vdc answers the screen's password
itself (the client never sees it), bytes flow both ways, a screen closes when its
instance stops, and the number of open screens is bounded."""

from __future__ import annotations

import os
import socket
import struct
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import libvirt
import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse, WebSocketTestSession

from app.config import Settings
from app.services.compute import console_proxy
from hypervisor.connection import POOL
from tests.conftest import Keys, bearer
from tests.integration.cloud import Cloud, build_cloud

VERSION = b"RFB 003.008\n"
SERVER_INIT = struct.pack(">HH16sI", 720, 400, b"\x20\x18\x00\x01" + b"\0" * 12, 4) + b"fake"


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    """The proxy is the same code on both engines; the tickets run on both."""
    return sqlite_url


def _recv_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _reversed_bits(byte: int) -> int:
    return sum(((byte >> bit) & 1) << (7 - bit) for bit in range(8))


class FakeScreen:
    """qemu's VNC server as far as the handshake goes: asks for VNC authentication, checks
    the DES answer, then echoes what it gets back, upper-cased."""

    def __init__(self) -> None:
        self.password = ""
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.client_inits: list[bytes] = []
        self.refused = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.sendall(VERSION)
                assert _recv_exactly(conn, 12) == VERSION
                conn.sendall(bytes([1, 2]))  # one type: VNC authentication
                assert _recv_exactly(conn, 1) == b"\x02"
                challenge = os.urandom(16)
                conn.sendall(challenge)
                key = bytes(_reversed_bits(b) for b in self.password.encode()[:8].ljust(8, b"\0"))
                decrypt = Cipher(TripleDES(key * 3), modes.ECB()).decryptor()
                if decrypt.update(_recv_exactly(conn, 16)) != challenge:
                    self.refused += 1
                    conn.sendall(struct.pack(">II", 1, 14) + b"wrong password")
                    return
                conn.sendall(struct.pack(">I", 0))
                self.client_inits.append(_recv_exactly(conn, 1))
                conn.sendall(SERVER_INIT)
                while data := conn.recv(4096):
                    conn.sendall(data.upper())
            except (ConnectionError, AssertionError, OSError):
                return

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def screen() -> Iterator[FakeScreen]:
    fake = FakeScreen()
    yield fake
    fake.close()


@pytest.fixture
def cloud(client: TestClient, keys: Keys, test_host_uri, make_disk: Callable[..., Path]) -> Cloud:  # type: ignore[no-untyped-def]
    return build_cloud(client, keys, test_host_uri(), make_disk)


def running_on(cloud: Cloud, screen: FakeScreen, key: str) -> str:
    """A running instance whose screen is the fake one: its domain defined (by vdc) while
    stopped, given the fake's port in place of autoport, then started by vdc again."""
    instance_id = cloud.wait_for(cloud.launch(key)["id"], "running")["id"]
    cloud.action(instance_id, "stop", key)
    cloud.wait_for(instance_id, "stopped", key=key)
    connection = POOL.get(cloud.host_uri)
    flags = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE
    xml = connection.lookupByName(instance_id).XMLDesc(flags)
    screen.password = ET.fromstring(xml).find("devices/graphics").get("passwd")  # type: ignore[union-attr,assignment]
    connection.defineXML(
        xml.replace("port='-1' autoport='yes'", f"port='{screen.port}' autoport='no'")
    )
    cloud.action(instance_id, "start", key)
    cloud.wait_for(instance_id, "running", key=key)
    return instance_id


def open_screen(cloud: Cloud, instance_id: str, key: str) -> WebSocketTestSession:
    answer = cloud.client.post(f"/api/v1/instances/{instance_id}/console/vnc", headers=bearer(key))
    assert answer.status_code == 200, answer.text
    url = urlsplit(answer.json()["url"])
    return cloud.client.websocket_connect(f"{url.path}?{url.query}")


def handshake(ws: WebSocketTestSession) -> bytes:
    """The client's side of RFB 3.8 with security type None, up to ServerInit."""
    received = ws.receive_bytes()
    assert received == VERSION
    ws.send_bytes(VERSION)
    offered = ws.receive_bytes()
    assert offered == b"\x01\x01"  # one type, None: no password asked of the client
    ws.send_bytes(b"\x01")
    assert ws.receive_bytes() == b"\x00\x00\x00\x00"
    ws.send_bytes(b"\x01")  # ClientInit: shared
    init = b""
    while len(init) < len(SERVER_INIT):
        init += ws.receive_bytes()
    return received + offered + init


def test_the_client_gets_the_screen_without_its_password(cloud: Cloud, screen: FakeScreen) -> None:
    alice = cloud.keys.new("alice")
    instance_id = running_on(cloud, screen, alice)
    with open_screen(cloud, instance_id, alice) as ws:
        seen = handshake(ws)
        assert seen.endswith(SERVER_INIT)
        assert screen.password.encode() not in seen
        ws.send_bytes(b"keys and clicks")
        echoed = b""
        while len(echoed) < 15:
            echoed += ws.receive_bytes()
        assert echoed == b"KEYS AND CLICKS"
    assert screen.client_inits == [b"\x01"]
    assert screen.refused == 0


def test_a_wrong_password_is_told_to_the_client(cloud: Cloud, screen: FakeScreen) -> None:
    alice = cloud.keys.new("alice")
    instance_id = running_on(cloud, screen, alice)
    screen.password = "not-it"
    with open_screen(cloud, instance_id, alice) as ws:
        assert ws.receive_bytes() == VERSION
        ws.send_bytes(VERSION)
        refusal = ws.receive_bytes()
    assert refusal[0] == 0  # no security types: the RFB 3.8 way to refuse, then the reason
    reason = refusal[5:].decode()
    assert reason == "the screen refused vdc's authentication: wrong password"
    assert screen.refused == 1


def test_the_screen_closes_when_the_instance_stops(
    cloud: Cloud, screen: FakeScreen, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console_proxy, "WATCH_SECONDS", 0.2)
    alice = cloud.keys.new("alice")
    instance_id = running_on(cloud, screen, alice)
    with open_screen(cloud, instance_id, alice) as ws:
        handshake(ws)
        # Stopped behind the proxy's back (the fake screen stays up): vdc's state decides.
        assert cloud.action(instance_id, "stop", alice).status_code == 202
        closed = ws.receive()
    assert closed["type"] == "websocket.close"
    assert closed["reason"].startswith(f"instance {instance_id} is st")  # stopping or stopped


@pytest.mark.parametrize("settings_overrides", [{"console_max_connections": 1}])
def test_screens_are_bounded_and_a_refusal_keeps_the_ticket(
    cloud: Cloud, screen: FakeScreen
) -> None:
    alice = cloud.keys.new("alice")
    instance_id = running_on(cloud, screen, alice)
    answer = cloud.client.post(
        f"/api/v1/instances/{instance_id}/console/vnc", headers=bearer(alice)
    ).json()
    url = urlsplit(answer["url"])
    second = f"{url.path}?{url.query}"
    with open_screen(cloud, instance_id, alice) as ws:
        handshake(ws)
        with (
            pytest.raises(WebSocketDenialResponse) as refused,
            cloud.client.websocket_connect(second),
        ):
            pass
        assert refused.value.status_code == 429
        assert refused.value.json()["detail"] == "1 screens are open on this server: retry later"
    with cloud.client.websocket_connect(second) as ws:  # the first one closed: room again
        handshake(ws)


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {}


@pytest.fixture
def settings(settings: Settings, settings_overrides: dict[str, object]) -> Settings:
    return settings.model_copy(update=settings_overrides)

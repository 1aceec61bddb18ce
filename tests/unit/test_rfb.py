"""The RFB handshakes of the console proxy against scripted peers: what each side is told,
and what is refused (the proxy end to end is tests/integration/test_console_proxy.py, and
with qemu's own VNC server tests/e2e/test_screen_e2e.py)."""

from __future__ import annotations

import asyncio
import struct
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.services.compute import rfb


class Scripted:
    """A peer that sends `incoming` and records what it is sent."""

    def __init__(self, incoming: bytes) -> None:
        self.incoming = bytearray(incoming)
        self.sent = bytearray()

    async def readexactly(self, size: int) -> bytes:
        if len(self.incoming) < size:
            raise rfb.RfbError("the peer went away")
        head = bytes(self.incoming[:size])
        del self.incoming[:size]
        return head

    async def write(self, data: bytes) -> None:
        self.sent += data


def run(coroutine) -> None:  # type: ignore[no-untyped-def]
    """In a thread of its own: a session's Playwright (tests/ui) keeps an event loop running
    in the main thread until the session ends, and asyncio.run() refuses to nest in it."""
    with ThreadPoolExecutor(max_workers=1) as thread:
        thread.submit(asyncio.run, coroutine).result()


def test_the_client_is_offered_none_and_told_ok() -> None:
    client = Scripted(rfb.VERSION + b"\x01")
    run(rfb.offer_no_authentication(client))
    assert bytes(client.sent) == rfb.VERSION + b"\x01\x01" + b"\x00\x00\x00\x00"


def test_a_client_of_another_version_or_security_type_is_refused() -> None:
    with pytest.raises(rfb.RfbError, match=r"RFB 3\.8 only"):
        run(rfb.offer_no_authentication(Scripted(b"RFB 003.003\n")))
    picky = Scripted(rfb.VERSION + b"\x02")
    with pytest.raises(rfb.RfbError, match="security type 2"):
        run(rfb.offer_no_authentication(picky))
    assert bytes(picky.sent).endswith(
        b"\x00\x00\x00\x01" + struct.pack(">I", 25) + b"choose security type None"
    )


def test_the_server_gets_the_password_answer() -> None:
    challenge = bytes(range(16))
    server = Scripted(rfb.VERSION + b"\x01\x02" + challenge + b"\x00\x00\x00\x00")
    run(rfb.authenticate_to_server(server, "s3cret"))
    assert bytes(server.sent) == (
        rfb.VERSION + b"\x02" + rfb.vnc_auth_response("s3cret", challenge)
    )
    # Only the first 8 characters count, as in every VNC server.
    assert rfb.vnc_auth_response("12345678", challenge) == rfb.vnc_auth_response(
        "123456789", challenge
    )
    assert rfb.vnc_auth_response("12345678", challenge) != rfb.vnc_auth_response(
        "12345679", challenge
    )


def test_a_server_that_refuses_or_asks_too_much_is_an_error() -> None:
    reason = b"too many clients"
    refusing = Scripted(rfb.VERSION + b"\x00" + struct.pack(">I", len(reason)) + reason)
    with pytest.raises(rfb.RfbError, match="refused the connection: too many clients"):
        run(rfb.authenticate_to_server(refusing, "pw"))
    with pytest.raises(rfb.RfbError, match=r"security types vdc does not answer: \[19\]"):
        run(rfb.authenticate_to_server(Scripted(rfb.VERSION + b"\x01\x13"), "pw"))
    with pytest.raises(rfb.RfbError, match=r"not RFB 3\.8"):
        run(rfb.authenticate_to_server(Scripted(b"RFB 003.003\n"), "pw"))
    # No password known: only a screen that asks for none is answered.
    run(rfb.authenticate_to_server(Scripted(rfb.VERSION + b"\x01\x01\x00\x00\x00\x00"), None))


def test_a_refusal_is_told_the_rfb_38_way() -> None:
    client = Scripted(rfb.VERSION)
    run(rfb.refuse(client, "no screen"))
    assert bytes(client.sent) == rfb.VERSION + b"\x00" + struct.pack(">I", 9) + b"no screen"

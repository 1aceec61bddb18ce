"""The RFB (VNC) security handshake on both sides of vdc's console proxy.

As Nova's RFB security proxy does: toward the screen (qemu's VNC server) vdc answers the
VNC authentication with the display's password itself; toward the client it offers the
security type "None", the client having been checked (session, one-time ticket) before
its first byte. The password never leaves vdc. After both handshakes the two sides stand
at ClientInit and the proxy copies bytes as they come.

Only RFB 3.8 (RFC 6143) is spoken to clients: qemu offers it, and noVNC and current viewers
answer with it. A refusal is told the RFB 3.8 way (no security types, then the reason), so
that a viewer shows why.
"""

from __future__ import annotations

import struct
from typing import Protocol

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

VERSION = b"RFB 003.008\n"
SECURITY_NONE = 1
SECURITY_VNC_AUTH = 2
_MAX_REASON = 4096  # a refusal's reason from the server, read at most


class RfbError(Exception):
    """The handshake failed; the message says why, in words a user may read."""


class Channel(Protocol):
    """One side of the proxy as a byte stream."""

    async def readexactly(self, size: int) -> bytes: ...

    async def write(self, data: bytes) -> None: ...


async def authenticate_to_server(server: Channel, password: str | None) -> None:
    """Takes the screen's side through version and security, up to ClientInit."""
    version = await server.readexactly(12)
    if not version.startswith(b"RFB 003.") or version[8:11] < b"008":
        raise RfbError(f"the screen speaks {version[:11]!r}, not RFB 3.8")
    await server.write(VERSION)
    (count,) = await server.readexactly(1)
    if count == 0:
        raise RfbError(f"the screen refused the connection: {await _reason(server)}")
    offered = await server.readexactly(count)
    if password is not None and SECURITY_VNC_AUTH in offered:
        await server.write(bytes([SECURITY_VNC_AUTH]))
        challenge = await server.readexactly(16)
        await server.write(vnc_auth_response(password, challenge))
    elif SECURITY_NONE in offered:
        await server.write(bytes([SECURITY_NONE]))
    else:
        raise RfbError(f"the screen asks for security types vdc does not answer: {list(offered)}")
    (result,) = struct.unpack(">I", await server.readexactly(4))
    if result != 0:
        raise RfbError(f"the screen refused vdc's authentication: {await _reason(server)}")


async def offer_no_authentication(client: Channel) -> None:
    """Takes the client's side through version and security (type None), up to ClientInit."""
    await client.write(VERSION)
    version = await client.readexactly(12)
    if version != VERSION:
        raise RfbError(f"the client answered {version[:11]!r}: vdc speaks RFB 3.8 only")
    await client.write(bytes([1, SECURITY_NONE]))
    (chosen,) = await client.readexactly(1)
    if chosen != SECURITY_NONE:
        await client.write(struct.pack(">I", 1) + _reason_bytes("choose security type None"))
        raise RfbError(f"the client chose security type {chosen}, not None")
    await client.write(struct.pack(">I", 0))


async def refuse(client: Channel, reason: str) -> None:
    """Tells a client why there is no screen, as an RFB 3.8 server refuses before security."""
    await client.write(VERSION)
    await client.readexactly(12)
    await client.write(b"\x00" + _reason_bytes(reason))


def vnc_auth_response(password: str, challenge: bytes) -> bytes:
    """VNC authentication (RFC 6143, 7.2.2): the challenge DES-encrypted with the password
    (8 bytes, NUL-padded) as the key, each key byte's bits in reverse order (a quirk of
    the original implementation that every server keeps)."""
    key = password.encode("latin-1", "replace")[:8].ljust(8, b"\0")
    key = bytes(int(f"{byte:08b}"[::-1], 2) for byte in key)
    # Three equal keys make triple DES single DES, which is what RFB uses.
    encryptor = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()  # noqa: S305 - RFB's
    return encryptor.update(challenge) + encryptor.finalize()


async def _reason(server: Channel) -> str:
    (length,) = struct.unpack(">I", await server.readexactly(4))
    text = await server.readexactly(min(length, _MAX_REASON))
    return text.decode("utf-8", "replace") or "no reason given"


def _reason_bytes(reason: str) -> bytes:
    text = reason.encode()
    return struct.pack(">I", len(text)) + text

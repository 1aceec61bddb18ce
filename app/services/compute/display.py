"""An instance's screen on its host: where qemu's VNC server listens, with which password,
and where vdc's console proxy finds it now.

The screen listens on the host's management side only, never on a guest network: on
vdc's own host (qemu:///system) on 127.0.0.1, where the proxy runs too; on a remote host
on the address in its libvirt URI, the one vdc reaches the host by. libvirt picks a free
port at each start (autoport), so the proxy reads the port from the running domain. The
password is random per instance, kept only in the domain's definition on its host; the
proxy answers the VNC authentication with it and never hands it to a client.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from urllib.parse import urlsplit

from app.models import HostNode
from app.services.hypervisors import driver_for
from hypervisor.specs import DisplaySpec

LOCAL_ADDRESS = "127.0.0.1"
# VNC authentication (DES) uses the first 8 characters of a password and ignores the rest.
PASSWORD_LENGTH = 8
_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True)
class DisplayTarget:
    """Where the proxy connects for a running instance's screen."""

    address: str
    port: int
    password: str | None


def listen_address(host: HostNode) -> str:
    """The host's management address: 127.0.0.1 for vdc's own host (a URI without a host
    part: qemu:///system, test://), else the host the URI names."""
    return urlsplit(host.uri).hostname or LOCAL_ADDRESS


def new_display(host: HostNode) -> DisplaySpec:
    """A screen for a domain about to be defined: a fresh random password each time (it
    is used only when the domain has no screen yet)."""
    password = "".join(secrets.choice(_ALPHABET) for _ in range(PASSWORD_LENGTH))
    return DisplaySpec(listen=listen_address(host), password=password)


def target(host: HostNode, instance_id: str) -> DisplayTarget | None:
    """The running instance's screen now; None when its domain is not running. Connects
    to the address vdc chose for the host, whatever else the domain's XML may say."""
    endpoint = driver_for(host).display(instance_id)
    if endpoint is None:
        return None
    return DisplayTarget(listen_address(host), endpoint.port, endpoint.password)

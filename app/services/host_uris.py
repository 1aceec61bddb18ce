"""Which libvirt URIs a host may have, and how a host's address is kept from tenants.

A libvirt URI is a command line in disguise: `qemu+ext:///system?command=/path/x` runs a
program as vdc's user, `?socket=`, `?netcat=` and `?proxy=` pick local or remote programs
and files, and `test:///path` parses any file it is given. So a host URI names one of the
transports vdc supports, the system instance of the hypervisor, and only parameters that
tune authentication; an operator may allow more (VDC_HOST_URI_PARAMS).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from app.config import Settings
from app.errors import BadRequest
from app.models import HostNode

LOCAL = "qemu"
REMOTE = ("qemu+ssh", "qemu+libssh", "qemu+libssh2", "qemu+tls", "qemu+tcp")
# Authentication and host-key settings: they make libvirt read key material, never run
# anything or open another socket.
SAFE_PARAMS = frozenset(
    {"keyfile", "known_hosts", "known_hosts_verify", "no_verify", "no_tty", "sshauth", "pkipath"}
)


def check(settings: Settings, uri: str) -> str:
    """The URI if vdc may use it; BadRequest saying what is wrong otherwise."""
    if uri != uri.strip() or any(ch in uri for ch in "\r\n\t "):
        raise BadRequest("a host URI has no spaces or line breaks")
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "test":
        if not settings.allow_test_hosts:
            raise BadRequest("test:// hosts are for vdc's own test suite (VDC_ALLOW_TEST_HOSTS)")
        return uri
    if scheme not in (LOCAL, *REMOTE):
        raise BadRequest(
            f"unsupported host URI scheme {parts.scheme!r}: use qemu:///system for this "
            f"machine, or one of {', '.join(s + '://HOST/system' for s in REMOTE)}"
        )
    if parts.path != "/system":
        raise BadRequest("a host URI names the system hypervisor: its path is /system")
    if scheme == LOCAL and parts.netloc:
        raise BadRequest("qemu:// is this machine; name a remote host with qemu+ssh://HOST/system")
    if scheme != LOCAL and not parts.hostname:
        raise BadRequest(f"{scheme}:// needs a host: {scheme}://HOST/system")
    if parts.fragment:
        raise BadRequest("a host URI has no #fragment")
    allowed = SAFE_PARAMS | extra_params(settings)
    for name, _ in parse_qsl(parts.query, keep_blank_values=True):
        if name not in allowed:
            raise BadRequest(
                f"host URI parameter {name!r} is not allowed: it can make libvirt run or open "
                "another program or socket; an operator who needs it adds it to "
                "VDC_HOST_URI_PARAMS"
            )
    return uri


def extra_params(settings: Settings) -> frozenset[str]:
    return frozenset(p.strip() for p in settings.host_uri_params.split(",") if p.strip())


def hide_host(message: str, host: HostNode | None) -> str:
    """A libvirt message as a tenant may read it: the host's URI, address, user and socket
    path replaced by the host's name (libvirt quotes them in connection errors)."""
    if host is None:
        return message
    parts = urlsplit(host.uri)
    revealing = [host.uri, parts.netloc, parts.hostname or ""]
    revealing += [value for name, value in parse_qsl(parts.query) if name == "socket"]
    for text in sorted((t for t in revealing if t), key=len, reverse=True):
        message = message.replace(text, f"host {host.name}")
    return message

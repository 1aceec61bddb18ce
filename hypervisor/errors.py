"""libvirt's errors turned into a few kinds vdc acts on, in one place.

The app maps these to HTTP answers in one place (app/services/hypervisors.as_app_error):
not found on the host, host unreachable (jobs retry later, the host shows offline), and
everything else (the operation failed: error state with libvirt's message as the reason).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

import libvirt

P = ParamSpec("P")
R = TypeVar("R")


class HypervisorError(Exception):
    """An operation on a host failed; the message is libvirt's, fit for an error reason."""


class HostUnreachable(HypervisorError):
    """The host's libvirtd cannot be reached (down, restarting, network): try again later."""


class NotFoundOnHost(HypervisorError):
    """The domain, network, pool or volume does not exist on the host."""


class AlreadyExists(HypervisorError):
    """Creating something that is there already (idempotent steps treat this as success)."""


_UNREACHABLE = {
    libvirt.VIR_ERR_SYSTEM_ERROR,
    libvirt.VIR_ERR_RPC,
    libvirt.VIR_ERR_NO_CONNECT,
    libvirt.VIR_ERR_INVALID_CONN,
    libvirt.VIR_ERR_AUTH_FAILED,
    libvirt.VIR_ERR_AUTH_UNAVAILABLE,
}
_NOT_FOUND = {
    libvirt.VIR_ERR_NO_DOMAIN,
    libvirt.VIR_ERR_NO_NETWORK,
    libvirt.VIR_ERR_NO_STORAGE_POOL,
    libvirt.VIR_ERR_NO_STORAGE_VOL,
    libvirt.VIR_ERR_NO_NWFILTER,
}
_EXISTS = {libvirt.VIR_ERR_DOM_EXIST, libvirt.VIR_ERR_STORAGE_VOL_EXIST}


def translate(error: libvirt.libvirtError) -> HypervisorError:
    code = error.get_error_code()
    message = error.get_error_message() or str(error)
    if code in _UNREACHABLE:
        return HostUnreachable(message)
    if code in _NOT_FOUND:
        return NotFoundOnHost(message)
    if code in _EXISTS or "already exists" in message:
        return AlreadyExists(message)
    return HypervisorError(message)


def translated(func: Callable[P, R]) -> Callable[P, R]:
    """Re-raises the libvirt errors of `func` as vdc's kinds."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except libvirt.libvirtError as error:
            raise translate(error) from error

    return wrapper


def absent_if_missing(call: Callable[[], R], *missing: int) -> R | None:
    """`call()`, or None when libvirt answers with one of the `missing` error codes: for
    idempotent steps, a thing that is not there is simply absent, not a failure."""
    try:
        return call()
    except libvirt.libvirtError as error:
        if error.get_error_code() in missing:
            return None
        raise

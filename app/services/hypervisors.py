"""Where the control plane meets hypervisor/: drivers for hosts, errors mapped in one place."""

from __future__ import annotations

from app.errors import AppError, Conflict, HostUnavailable, NotFound
from app.models import HostNode
from hypervisor.driver import HostDriver
from hypervisor.errors import AlreadyExists, HostUnreachable, HypervisorError, NotFoundOnHost


def driver_for(host: HostNode) -> HostDriver:
    return HostDriver(host.uri)


def as_app_error(error: HypervisorError) -> AppError:
    """The answer to a libvirt failure that reaches the API (the handler in
    app/api/errors.py); jobs instead record the message as the instance's error reason."""
    if isinstance(error, NotFoundOnHost):
        return NotFound(str(error))
    if isinstance(error, AlreadyExists):
        return Conflict(str(error))
    if isinstance(error, HostUnreachable):
        return HostUnavailable(f"host unreachable: {error}")
    return HostUnavailable(f"libvirt refused: {error}")

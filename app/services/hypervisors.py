"""Where the control plane meets hypervisor/: drivers for hosts, errors mapped in one place."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from app.errors import AppError, Conflict, HostUnavailable, NotFound
from app.models import HostNode
from hypervisor.driver import HostDriver
from hypervisor.errors import AlreadyExists, HostUnreachable, HypervisorError, NotFoundOnHost

INSTANCE_POOL = "vdc-instances"


def driver_for(host: HostNode) -> HostDriver:
    return HostDriver(host.uri)


def as_app_error(error: HypervisorError, host: HostNode | None = None) -> AppError:
    where = f" on host {host.name}" if host is not None else ""
    if isinstance(error, NotFoundOnHost):
        return NotFound(f"{error}{where}")
    if isinstance(error, AlreadyExists):
        return Conflict(f"{error}{where}")
    if isinstance(error, HostUnreachable):
        return HostUnavailable(f"host unreachable{where}: {error}")
    return HostUnavailable(f"libvirt refused{where}: {error}")


@contextmanager
def hypervisor_errors(host: HostNode | None = None) -> Iterator[None]:
    """For synchronous API work: a libvirt failure becomes a clear 4xx/5xx answer."""
    try:
        yield
    except HypervisorError as error:
        raise as_app_error(error, host) from error

"""Where the control plane meets hypervisor/: drivers for hosts, errors mapped in one place."""

from __future__ import annotations

import logging
import shlex
from collections.abc import Callable
from typing import TypeVar

from app.config import Settings
from app.errors import AppError, Conflict, HostUnavailable, NotFound
from app.models import HostNode
from hypervisor.connection import POOL
from hypervisor.driver import HostDriver
from hypervisor.errors import AlreadyExists, HostUnreachable, HypervisorError, NotFoundOnHost
from hypervisor.host_shell import HostShell


def driver_for(host: HostNode) -> HostDriver:
    return HostDriver(host.uri)


log = logging.getLogger("vdc.hypervisors")
T = TypeVar("T")


def forget_facts() -> bool:
    """Every host is checked again by the next steps (after a failed step: what this
    process remembered making sure of, a pool or a network, may be gone); False when
    nothing was remembered."""
    return POOL.forget_facts()


def rechecking_hosts(job: Callable[[], T], name: str) -> T:
    """Runs a job (idempotent from the top). A host step that fails while this process
    remembered making sure of pools and networks (hypervisor ConnectionPool.facts) may have
    failed because one is gone (libvirtd restarted, an operator removed it): the job runs
    once more at once, every host checked again, as after a crash. A second failure, or an
    unreachable host, is the job's as before."""
    try:
        return job()
    except HostUnreachable:
        raise
    except HypervisorError as error:
        if not forget_facts():
            raise
        log.info("job %s: %s; running it again, checking every host", name, error)
        return job()


def shell_for(settings: Settings, host: HostNode) -> HostShell:
    """Runs the host steps libvirt has no call for: locally, or over ssh as the URI's user."""
    return HostShell(
        host.uri,
        ssh_options=tuple(shlex.split(settings.ssh_options)),
        control_dir=settings.data_dir / "ssh",
    )


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

"""A wrapper over virDomain with named operations and vdc's own power-state names."""

from __future__ import annotations

import libvirt

from hypervisor.errors import NotFoundOnHost, translated
from hypervisor.specs import VDC_XML_NAMESPACE, DomainInfo
from hypervisor.xml.base import parse

_STATES = {
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "running",  # running, waiting on I/O
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "running",  # shutting down, still running
    libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "paused",
}


class Guest:
    def __init__(self, domain: libvirt.virDomain) -> None:
        self._domain = domain

    @property
    def name(self) -> str:
        return str(self._domain.name())

    @translated
    def state(self) -> str:
        state, _reason = self._domain.state()
        return _STATES.get(state, "other")

    def is_running(self) -> bool:
        return self.state() in ("running", "paused")

    @translated
    def start(self) -> None:
        if not self.is_running():
            self._domain.create()

    @translated
    def shutdown(self) -> None:
        """Asks the guest to power off (ACPI power button); returns at once."""
        if self.is_running():
            self._domain.shutdown()

    @translated
    def poweroff(self) -> None:
        """Pulls the plug."""
        try:
            self._domain.destroy()
        except libvirt.libvirtError as error:
            if error.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID:  # not running
                raise

    @translated
    def reboot(self) -> None:
        self._domain.reboot(0)

    @translated
    def undefine(self) -> None:
        self.poweroff()
        flags = libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
        try:
            self._domain.undefineFlags(flags)
        except libvirt.libvirtError as error:
            if error.get_error_code() in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_INVALID_ARG):
                self._domain.undefine()  # drivers without these flags (the test driver)
            else:
                raise

    def info(self) -> DomainInfo:
        instance_id, account_id = self._vdc_metadata()
        return DomainInfo(
            name=self.name, state=self.state(), instance_id=instance_id, account_id=account_id
        )

    def _vdc_metadata(self) -> tuple[str | None, str | None]:
        try:
            text = self._domain.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, VDC_XML_NAMESPACE)
        except libvirt.libvirtError:
            return None, None  # not created by vdc
        element = parse(text, "instance")  # libvirt returns it without its namespace
        return element.get("id"), element.get("account")


def lookup(connection: libvirt.virConnect, name: str) -> Guest:
    try:
        return Guest(connection.lookupByName(name))
    except libvirt.libvirtError as error:
        if error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            raise NotFoundOnHost(f"domain {name} not found") from error
        raise

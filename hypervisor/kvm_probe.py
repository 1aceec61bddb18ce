"""Does KVM work on a host? Boot a guest under it and see.

libvirt reports KVM wherever /dev/kvm opens, but on some machines (nested virtualisation
without full support) a KVM guest stops at once during its BIOS boot: "KVM internal error.
Suberror: 1 ... emulation failure", the domain paused. So vdc boots a probe guest
(designer.kvm_probe_domain) and keeps `kvm` only when it reaches its boot loader's prompt.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import libvirt

from hypervisor import designer
from hypervisor.errors import translated
from hypervisor.host import Host
from hypervisor.xml.base import parse

PROMPT = b"boot:"  # syslinux's, on the serial port: the BIOS boot went through
TIMEOUT = 30.0


@dataclass(frozen=True)
class Verdict:
    virt_type: str  # "kvm" or "qemu"
    reason: str


class KvmProbeSteps(Host):
    @translated
    def probe_kvm(
        self,
        disk_path: str,
        console_log: str,
        read_console: Callable[[], bytes],
        timeout: float = TIMEOUT,
    ) -> Verdict:
        """Boots the probe disk under KVM on the host; `read_console` reads `console_log`."""
        return _probe(self._conn(), disk_path, console_log, read_console, timeout)


def _probe(
    connection: libvirt.virConnect,
    disk_path: str,
    console_log: str,
    read_console: Callable[[], bytes],
    timeout: float,
) -> Verdict:
    capabilities = parse(connection.getCapabilities(), "capabilities")
    if not capabilities.findall("./guest/arch/domain[@type='kvm']"):
        return Verdict("qemu", "libvirt reports no KVM on this host")
    name = f"vdc-kvm-probe-{uuid.uuid4().hex[:8]}"
    xml = designer.kvm_probe_domain(name, disk_path, console_log).to_xml()
    started = time.monotonic()
    try:
        domain = connection.createXML(xml, 0)  # transient: gone once destroyed
    except libvirt.libvirtError as error:
        return Verdict("qemu", f"a KVM guest does not start here: {error.get_error_message()}")
    try:
        while time.monotonic() - started < timeout:
            state, _ = domain.state()
            if state != libvirt.VIR_DOMAIN_RUNNING:
                return Verdict(
                    "qemu",
                    f"a KVM probe guest stopped during its BIOS boot after "
                    f"{time.monotonic() - started:.1f}s (state {_STATE_NAMES.get(state, state)};"
                    " KVM internal error?): guests here run under software emulation",
                )
            if PROMPT in read_console():
                return Verdict(
                    "kvm",
                    f"a KVM probe guest reached its boot loader in "
                    f"{time.monotonic() - started:.1f}s",
                )
            time.sleep(0.5)
        return Verdict("qemu", f"a KVM probe guest did not reach its boot loader in {timeout:g}s")
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            domain.destroy()


_STATE_NAMES = {
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
}

"""What a host's guests run under, found by booting a probe guest there (hypervisor/
kvm_probe.py): `kvm` only where a KVM guest really boots, else `qemu` (software emulation),
with the reason, shown for each host in the API, the CLI and the web UI."""

from __future__ import annotations

from sqlmodel import Session

from app.config import Settings
from app.models import HostNode
from app.services.compute.probe_disk import NAME, ProbeDiskError, probe_disk
from app.services.hypervisors import driver_for
from app.services.storage import pools
from app.services.storage.pools import CONSOLE_POOL, IMAGE_POOL
from hypervisor.errors import HypervisorError

PROBE_LOG = "vdc-kvm-probe"  # its console log: vdc-console/vdc-kvm-probe.log


def probe(session: Session, settings: Settings, host: HostNode) -> HostNode:
    """Probes the host and records its virt type (and why)."""
    driver = driver_for(host)
    if driver.is_test():
        host.virt_type, host.virt_type_reason = "test", "libvirt's test driver"
    else:
        try:
            host.virt_type, host.virt_type_reason = _boot_probe(settings, host)
        except (ProbeDiskError, HypervisorError) as error:
            fallback = driver.virt_type("auto")
            host.virt_type = fallback
            host.virt_type_reason = f"not probed ({error}); libvirt reports {fallback}"[:1024]
    session.add(host)
    session.commit()
    return host


def _boot_probe(settings: Settings, host: HostNode) -> tuple[str, str]:
    driver = driver_for(host)
    disk = probe_disk(settings)
    driver.ensure_pool(pools.pool_spec(settings, CONSOLE_POOL))
    if pools.keeps_files_here(driver):
        disk_path = str(disk)
    else:
        driver.ensure_pool(pools.pool_spec(settings, IMAGE_POOL))
        disk_path = driver.upload_file(IMAGE_POOL, NAME, disk)
    console_log = pools.console_log(settings, PROBE_LOG)
    pools.delete_console_log(settings, driver, PROBE_LOG)  # an old probe's prompt is no answer

    def read_console() -> bytes:
        return pools.read_console_log(settings, driver, PROBE_LOG, 4096)[0]

    try:
        verdict = driver.probe_kvm(disk_path, console_log, read_console)
    finally:
        pools.delete_console_log(settings, driver, PROBE_LOG)
    return verdict.virt_type, verdict.reason

"""HostDriver's steps are safe to repeat and to race: jobs rerun them after crashes, and
the first launches on a new host all try to create its network and pool at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from hypervisor.connection import POOL
from hypervisor.driver import HostDriver
from hypervisor.specs import DhcpHost, NetworkSpec, PoolSpec, VolumeSpec

NETWORK = NetworkSpec(
    name="vdc-nw-race",
    bridge="vdcrace",
    gateway="10.77.0.1",
    prefix=24,
    dhcp_start="10.77.0.2",
    dhcp_end="10.77.0.254",
)


def test_racing_ensures_end_with_one_network_one_pool_and_every_volume(
    test_host_uri, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    driver = HostDriver(test_host_uri())

    def launch_steps(n: int) -> str:
        driver.ensure_network(NETWORK)
        driver.add_dhcp_host(NETWORK.name, DhcpHost(f"52:54:00:00:00:{n:02x}", f"10.77.0.{n + 2}"))
        driver.ensure_pool(PoolSpec("vdc-instances", str(tmp_path / "instances")))
        spec = VolumeSpec(f"i-{n}-root.qcow2", 1024**3, "/images/base.qcow2", "qcow2")
        return driver.ensure_volume("vdc-instances", spec)

    with ThreadPoolExecutor(8) as pool:
        paths = list(pool.map(launch_steps, range(16)))
    assert len(set(paths)) == 16
    connection = POOL.get(driver.uri)
    assert connection.listNetworks() == [NETWORK.name]
    assert connection.listStoragePools() == ["vdc-instances"]
    assert len(driver.dhcp_hosts(NETWORK.name)) == 16


def test_every_step_twice_changes_nothing_the_second_time(test_host_uri, tmp_path) -> None:  # type: ignore[no-untyped-def]
    driver = HostDriver(test_host_uri())
    host = DhcpHost("52:54:00:00:00:01", "10.77.0.2", "web")
    for _ in range(2):
        driver.ensure_network(NETWORK)
        driver.add_dhcp_host(NETWORK.name, host)
        driver.ensure_pool(PoolSpec("vdc-instances", str(tmp_path)))
        first = driver.ensure_volume(
            "vdc-instances", VolumeSpec("v.qcow2", 1024**3, "/b.qcow2", "raw")
        )
    assert driver.dhcp_hosts(NETWORK.name) == [host]
    assert first.endswith("/v.qcow2")
    # A moved address is changed in place, removal of something gone is no error.
    driver.add_dhcp_host(NETWORK.name, DhcpHost(host.mac, "10.77.0.9", "web"))
    assert [h.ip for h in driver.dhcp_hosts(NETWORK.name)] == ["10.77.0.9"]
    for _ in range(2):
        driver.remove_dhcp_host(NETWORK.name, host.mac)
        driver.delete_volume("vdc-instances", "v.qcow2")
        driver.undefine("i-never-defined")
    assert driver.dhcp_hosts(NETWORK.name) == []
    assert not driver.volume_exists("vdc-instances", "v.qcow2")
    driver.delete_network(NETWORK.name)
    driver.delete_network(NETWORK.name)

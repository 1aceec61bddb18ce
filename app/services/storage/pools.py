"""Where disks live on a host: the two libvirt storage pools and the names in them.

Instance root disks are `vdc-instances/<instance>-root.qcow2` (overlays on their image);
volumes are `vdc-volumes/<volume>.qcow2` (blank, or overlays on an image).
"""

from __future__ import annotations

from app.config import Settings
from app.models import Image, Volume
from hypervisor.driver import HostDriver
from hypervisor.specs import DiskSpec, PoolSpec, VolumeSpec

INSTANCE_POOL = "vdc-instances"
VOLUME_POOL = "vdc-volumes"


def root_volume_name(instance_id: str) -> str:
    return f"{instance_id}-root.qcow2"


def location(volume: Volume) -> tuple[str, str]:
    """(pool, volume name) of a vdc volume on its host."""
    if volume.boot:
        assert volume.instance_id is not None, "a boot volume belongs to an instance"
        return INSTANCE_POOL, root_volume_name(volume.instance_id)
    return VOLUME_POOL, f"{volume.id}.qcow2"


def pool_spec(settings: Settings, pool_name: str) -> PoolSpec:
    folder = settings.instance_dir if pool_name == INSTANCE_POOL else settings.volume_dir
    return PoolSpec(pool_name, str(folder))


def ensure_on_host(
    settings: Settings, driver: HostDriver, volume: Volume, image: Image | None
) -> str:
    """Creates the volume's file in its pool unless it is there; returns its path."""
    pool_name, name = location(volume)
    driver.ensure_pool(pool_spec(settings, pool_name))
    return driver.ensure_volume(
        pool_name,
        VolumeSpec(
            name=name,
            capacity_bytes=max(volume.size, image.virtual_size if image else 0),
            backing_path=str(settings.image_dir / image.file_name) if image else None,
            backing_format=image.format if image else None,
        ),
    )


def disk_spec(volume: Volume, path: str) -> DiskSpec:
    """The volume as the guest sees it: a virtio disk whose serial is the volume id."""
    assert volume.device is not None, "an attached volume has a device"
    return DiskSpec(path=path, format="qcow2", target=volume.device, serial=volume.id)


def delete_from_host(driver: HostDriver, volume: Volume) -> None:
    driver.delete_volume(*location(volume))

"""Where files live on a host: vdc's libvirt storage pools and the names in them.

- `vdc-images/<image>.<format>`: the host's copy of an image (image_copies.py). On the host
  vdc runs on, this pool is vdc's image store itself: nothing is copied there.
- `vdc-instances/<instance>-root.qcow2`: root disks, overlays on the host's image copy
  (blank for an instance launched from an ISO); `<image>-capture.qcow2`, a root disk's
  standalone copy while an image is captured from it;
- `vdc-volumes/<volume>.qcow2`: volumes (blank, or overlays on an image copy);
- `vdc-console/<instance>.log`: serial console logs, read back through libvirt.

Each pool has the same folder on every host (the settings' paths), so a host that is not
vdc's own simply has these folders of its own.
"""

from __future__ import annotations

from pathlib import Path

from app.config import Settings
from app.models import Image, Volume
from hypervisor.driver import HostDriver
from hypervisor.specs import DiskSpec, PoolSpec, VolumeSpec

IMAGE_POOL = "vdc-images"
INSTANCE_POOL = "vdc-instances"
VOLUME_POOL = "vdc-volumes"
CONSOLE_POOL = "vdc-console"


def root_volume_name(instance_id: str) -> str:
    return f"{instance_id}-root.qcow2"


def capture_volume_name(image_id: str) -> str:
    """The standalone copy of a root disk that an image capture brings to the image store,
    beside the root disk on its host while it is made and sent."""
    return f"{image_id}-capture.qcow2"


def location(volume: Volume) -> tuple[str, str]:
    """(pool, volume name) of a vdc volume on its host."""
    if volume.boot:
        assert volume.instance_id is not None, "a boot volume belongs to an instance"
        return INSTANCE_POOL, root_volume_name(volume.instance_id)
    return VOLUME_POOL, f"{volume.id}.qcow2"


def pool_spec(settings: Settings, pool_name: str) -> PoolSpec:
    folders = {
        IMAGE_POOL: settings.image_dir,
        INSTANCE_POOL: settings.instance_dir,
        VOLUME_POOL: settings.volume_dir,
        CONSOLE_POOL: settings.console_dir,
    }
    return PoolSpec(pool_name, str(folders[pool_name]))


def console_log(settings: Settings, instance_id: str) -> str:
    """The path of an instance's console log on its host (in the console pool)."""
    return str(settings.console_dir / f"{instance_id}.log")


def read_console_log(
    settings: Settings, driver: HostDriver, instance_id: str, most: int
) -> tuple[bytes, bool]:
    """The last `most` bytes of an instance's console log, and whether there was more."""
    if keeps_files_here(driver):
        return _tail(Path(console_log(settings, instance_id)), most)
    return driver.read_tail(CONSOLE_POOL, f"{instance_id}.log", most)


def delete_console_log(settings: Settings, driver: HostDriver, instance_id: str) -> None:
    if keeps_files_here(driver):
        Path(console_log(settings, instance_id)).unlink(missing_ok=True)
    else:
        driver.delete_file(CONSOLE_POOL, f"{instance_id}.log")


def _tail(path: Path, most: int) -> tuple[bytes, bool]:
    if not path.exists():
        return b"", False
    with path.open("rb") as handle:
        size = handle.seek(0, 2)
        handle.seek(max(0, size - most))
        return handle.read(), size > most


def keeps_files_here(driver: HostDriver) -> bool:
    """The host vdc runs on (its pools are vdc's own folders), or libvirt's test driver (no
    files at all): images need no upload and logs are read as local files."""
    return driver.is_local() or driver.is_test()


def ensure_on_host(
    settings: Settings,
    driver: HostDriver,
    volume: Volume,
    image: Image | None,
    image_path: str | None,
) -> str:
    """Creates the volume's file in its pool unless it is there (an overlay on `image_path`,
    the host's copy of `image`); returns its path."""
    pool_name, name = location(volume)
    driver.ensure_pool(pool_spec(settings, pool_name))
    return driver.ensure_volume(
        pool_name,
        VolumeSpec(
            name=name,
            capacity_bytes=max(volume.size, image.virtual_size if image else 0),
            backing_path=image_path if image else None,
            backing_format=image.format if image else None,
        ),
    )


def disk_spec(volume: Volume, path: str) -> DiskSpec:
    """The volume as the guest sees it: a virtio disk whose serial is the volume id."""
    assert volume.device is not None, "an attached volume has a device"
    return DiskSpec(path=path, format="qcow2", target=volume.device, serial=volume.id)


def delete_from_host(driver: HostDriver, volume: Volume) -> None:
    driver.delete_volume(*location(volume))

"""The data dir is private: it holds the SQLite database (every tenant's user-data), the
admin key, the web secret and the image store.

Files vdc makes are its own only (umask 077). The folder itself is 0711, not 0700: qemu
runs as its own user and must pass through it to the disks in the pool folders below
(libvirt hands it each disk file, not the folder), but may not list it.
"""

from __future__ import annotations

import os
import resource
import stat
from pathlib import Path

from app.config import Settings

DIR_MODE = 0o711


def make_private(settings: Settings) -> None:
    """Sets the process umask to 077 and tightens the data dir and its database files,
    also those an earlier version made world-readable. Call before touching the data dir."""
    os.umask(0o077)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.data_dir, DIR_MODE)
    if settings.image_dir.is_dir():
        make_passable(settings.image_dir)
    for name in ("vdc.sqlite3", "vdc.sqlite3-wal", "vdc.sqlite3-shm", "admin.key", "web.secret"):
        _chmod_at_most(settings.data_dir / name, 0o600)


def make_passable(folder: Path) -> Path:
    """Creates a folder under the data dir that qemu (another user) passes through to the
    disks below it, as the data dir itself: 0711 whatever the umask. libvirt checks, as
    qemu's user, that an overlay's backing file (an image in the image store) exists."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, DIR_MODE)
    return folder


def _chmod_at_most(path: os.PathLike[str], mode: int) -> None:
    try:
        current = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return
    if current & ~mode:
        os.chmod(path, current & mode)


def raise_open_files_limit() -> int:
    """Lifts the soft limit on open files to the hard one: the server holds sockets for the
    API, every guest's metadata connections (capped, see metadata/limits.py), the database
    and libvirt. Returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 65536)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard

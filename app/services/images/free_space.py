"""Room for the big files vdc writes (image copies, uploads, conversions): checked before
writing when the size is known, and a full disk met while writing (ENOSPC, EDQUOT) turned
into a 507 that says how much was free and how much was needed, the partial file removed."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from app.errors import InsufficientStorage

IMAGE_STORE = "the image store"
FULL = (errno.ENOSPC, errno.EDQUOT)
_MIB = 1024 * 1024


def not_enough(
    directory: Path, needed: int, *, at_least: bool = False, where: str = IMAGE_STORE
) -> InsufficientStorage:
    # Free space rounded down and the need rounded up: never a message saying it would fit.
    free = shutil.disk_usage(directory).free // _MIB
    need = -(-needed // _MIB)
    amount = f"at least {need}" if at_least else str(need)
    return InsufficientStorage(f"not enough space in {where}: {free} MiB free, {amount} MiB needed")


def require(directory: Path, needed: int, where: str = IMAGE_STORE) -> None:
    """Refuses before writing `needed` bytes into `directory` that would not fit."""
    if needed > shutil.disk_usage(directory).free:
        raise not_enough(directory, needed, where=where)


def raise_if_full(
    error: OSError, partial: Path, needed: int, *, at_least: bool = False, where: str = IMAGE_STORE
) -> None:
    """A full disk met while writing `partial` becomes a 507: the partial file is removed
    first, so the free space it states is what there is. Other errors are the caller's."""
    if error.errno not in FULL:
        return
    partial.unlink(missing_ok=True)
    raise not_enough(partial.parent, needed, at_least=at_least, where=where) from error

"""The files of Wakame-vdc's metadata drive, from the tree the metadata service answers.

The drive (built by app/services/compute/metadata_drive.py) holds `meta-data/` as a folder
with one file per leaf of the tree, and `user-data` at its root: each file's bytes are
what `render` answers at its path, so a guest reads the same on the drive as over HTTP.

vfat allows no `:` in a name, so a MAC's folder under `network/interfaces/macs/` is written
with `-` instead (`52-54-00-12-34-56/`; its `mac` file keeps the colons), as Wakame-vdc
did; a key's `0=name` folder is `public-keys/0/`, the path clients read it by.
"""

from __future__ import annotations

import re

from metadata.tree import Tree, render

# What vfat refuses in a name, besides the `/` that separates them.
_NOT_IN_VFAT = re.compile(r'[\x00-\x1f"*:<>?\\|]')
_KEY_ENTRY = re.compile(r"^(\d+)=")


def drive_files(tree: Tree) -> dict[str, bytes]:
    """Path on the drive (`meta-data/instance-id`, `user-data`) -> its bytes."""
    files = {
        drive_path(path): render(tree, path).body
        for path in _leaves(tree.get("meta-data", {}), "meta-data")
    }
    if "user-data" in tree:
        files["user-data"] = render(tree, "user-data").body
    return files


def drive_path(path: str) -> str:
    """A tree path as the drive names it (see the module's docstring)."""
    parts = []
    for part in path.split("/"):
        name = part.split("=", 1)[0] if _KEY_ENTRY.match(part) else part
        name = name.replace(":", "-")
        if not name or _NOT_IN_VFAT.search(name) or name in (".", ".."):
            raise ValueError(f"{path!r} cannot be a path on a FAT drive")
        parts.append(name)
    return "/".join(parts)


def _leaves(node: Tree | str | bytes, path: str) -> list[str]:
    if not isinstance(node, dict):
        return [path]
    return [leaf for name, child in node.items() for leaf in _leaves(child, f"{path}/{name}")]

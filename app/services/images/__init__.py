"""Machine images: registration (local file, upload), qemu-img inspection and conversion,
and `image prepare` (offline edits with libguestfs, vdc-init installation).

May use: identity, the shared services.
"""

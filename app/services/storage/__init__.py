"""Storage: volumes (root disks included), their jobs, and the libvirt pools they live in.

May use: the shared services only (it reads instances as models, never through compute).
"""

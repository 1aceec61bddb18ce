"""Compute: instances from launch to terminate, their jobs, the state sync, instance types.

May use: storage, network, the shared services (access, jobs, placement, hosts, ...).
"""

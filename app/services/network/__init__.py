"""Networking: networks and their address plans, MAC/IP allocation, security groups and the
nwfilters that enforce them.

May use: the shared services only.
"""

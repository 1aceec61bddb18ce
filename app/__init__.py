"""vdc: a virtual data center control plane (a re-implementation of Wakame-vdc)."""

__version__ = "0.1.0"

"""The server process's heap and Python's garbage collector.

`vdc serve` holds about 180,000 objects once it has started (FastAPI's routes and models,
pydantic's validators, SQLAlchemy's mappers, vdc's own modules) and keeps nearly all of them
until it stops. Python's collector scans them all at every full (generation 2) collection,
and with the allocation of a list answer (100 rows, their models, their JSON) a full
collection came every second or so and took 70-160 ms on the development machine (2 cores):
the request it fell in took that much longer. bench/list.py saw it as a p99 of 80-110 ms
against a p50 of 10-20 ms, in every case and on both databases alike, and gc.callbacks put a
full collection inside every slow request.

gc.freeze() moves what exists into a generation the collector never scans: the full
collections that follow look at what came after start-up only (about 20,000 objects,
3-13 ms). Objects frozen are never freed, so this runs once, after start-up, after a
collection that frees the garbage of start-up itself.
"""

from __future__ import annotations

import gc


def freeze_start_up() -> None:
    gc.collect()
    gc.freeze()

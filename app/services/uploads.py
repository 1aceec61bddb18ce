"""Streaming a request body to disk: never held whole in memory, hashed as it arrives."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from starlette.requests import Request

from app.errors import BadRequest, PayloadTooLarge

_FLUSH_AT = 4 * 1024 * 1024


async def receive_upload(request: Request, target: Path, limit: int) -> str:
    """Writes the body to `target` (new file, 0640) and returns its sha256."""
    digest = hashlib.sha256()
    received = 0
    pending: list[bytes] = []
    pending_size = 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    with os.fdopen(fd, "wb") as writer:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise PayloadTooLarge(f"image is over the limit of {limit} bytes")
            digest.update(chunk)
            # Small network chunks are gathered so the disk sees few large writes.
            pending.append(chunk)
            pending_size += len(chunk)
            if pending_size >= _FLUSH_AT:
                writer.write(b"".join(pending))
                pending, pending_size = [], 0
        writer.write(b"".join(pending))
        writer.flush()
        os.fsync(writer.fileno())
    if received == 0:
        raise BadRequest("the request body is empty; send the image file as the body")
    return digest.hexdigest()

"""Streaming a request body to disk: never held whole in memory, hashed as it arrives."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from app.config import Settings
from app.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from app.models import Image
from app.services.images import free_space, images
from app.services.images.images import ImageSpec

_FLUSH_AT = 4 * 1024 * 1024


async def receive_upload(
    request: Request, target: Path, limit: int, declared: int | None = None
) -> str:
    """Writes the body to `target` (new file, 0640) and returns its sha256. A full disk is
    a 507 naming the body's declared size, or (none declared) what had arrived."""
    digest = hashlib.sha256()
    received = 0
    pending: list[bytes] = []
    pending_size = 0
    try:
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
    except OSError as error:
        free_space.raise_if_full(error, target, declared or received, at_least=declared is None)
        raise
    if received == 0:
        raise BadRequest("the request body is empty; send the image file as the body")
    return digest.hexdigest()


async def register_upload(
    request: Request, session: Session, settings: Settings, spec: ImageSpec
) -> Image:
    """An image sent as the raw request body (the API's upload and the web UI's)."""
    spec.check()  # before reading gigabytes that would be refused anyway
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type != "application/octet-stream":
        raise UnsupportedMediaType(
            "send the image file as the body, Content-Type: application/octet-stream"
        )
    declared = request.headers.get("content-length")
    size = int(declared) if declared and declared.isdigit() else None
    if size is not None and size > settings.max_image_size:
        raise PayloadTooLarge(f"image is over the limit of {settings.max_image_size} bytes")
    await run_in_threadpool(images.check_quota_early, session, settings, spec, size)
    with images.partial_file(settings) as partial:
        if size is not None:  # refused before the first byte is read
            free_space.require(settings.image_dir, size)
        digest = await receive_upload(request, partial, settings.max_image_size, size)
        return await run_in_threadpool(
            images.finish_upload, session, settings, partial, digest, spec
        )

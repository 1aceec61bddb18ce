"""One error hierarchy for the whole control plane, rendered as {"type", "detail"}.

Services raise these; the API turns them into responses in one handler (app/api/errors.py)
and the CLI prints the detail and exits non-zero.
"""

from __future__ import annotations


class AppError(Exception):
    status_code = 500
    type = "internal_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequest(AppError):
    status_code = 400
    type = "bad_request"


class InvalidImage(BadRequest):
    type = "invalid_image"


class Unauthorized(AppError):
    status_code = 401
    type = "unauthorized"


class Forbidden(AppError):
    status_code = 403
    type = "forbidden"


class NotFound(AppError):
    status_code = 404
    type = "not_found"

    @classmethod
    def resource(cls, kind: str, resource_id: str) -> NotFound:
        return cls(f"{kind} {resource_id} not found")


class Conflict(AppError):
    status_code = 409
    type = "conflict"


class PayloadTooLarge(AppError):
    status_code = 413
    type = "payload_too_large"


class UnsupportedMediaType(AppError):
    status_code = 415
    type = "unsupported_media_type"


class HostUnavailable(AppError):
    """A host could not be reached or refused the operation (libvirt's message attached)."""

    status_code = 502
    type = "host_unavailable"


class InsufficientStorage(AppError):
    """A disk vdc writes to is full (or the quota reached): nothing was kept."""

    status_code = 507
    type = "insufficient_storage"

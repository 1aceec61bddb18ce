"""Every error leaves the API as {"type": ..., "detail": ...}; never a traceback."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from app.errors import AppError
from app.services.hypervisors import as_app_error
from hypervisor.errors import HypervisorError

log = logging.getLogger("vdc.api")


class ErrorBody(BaseModel):
    type: str
    detail: str


# Documented on every API route, so the OpenAPI schema tells the truth about failures.
ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in [
        (400, "Bad request"),
        (401, "Missing or invalid API key"),
        (403, "Not allowed for this API key"),
        (404, "Not found (or belongs to another account)"),
        (409, "Conflicts with the resource's current state"),
        (422, "Request does not match the schema"),
    ]
}


def _body(status: int, error_type: str, detail: str, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return JSONResponse(
        status_code=status, content={"type": error_type, "detail": detail}, headers=headers
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def app_error(_request: Request, exc: AppError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        response: JSONResponse = _body(exc.status_code, exc.type, exc.detail, headers)
        return response

    @app.exception_handler(HypervisorError)
    async def hypervisor_error(_request: Request, exc: HypervisorError) -> JSONResponse:
        return await app_error(_request, as_app_error(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
            problems.append(f"{where}: {error.get('msg', 'invalid')}" if where else error["msg"])
        response: JSONResponse = _body(422, "validation_error", "; ".join(problems))
        return response

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        response: JSONResponse = _body(
            exc.status_code, "http_error", str(exc.detail), getattr(exc, "headers", None)
        )
        return response

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        response: JSONResponse = _body(500, "internal_error", "internal error; see the server log")
        return response

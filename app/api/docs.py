"""/docs and /redoc with assets served from the package: they work with no network."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)

VENDOR = "/static/vendor"
FAVICON = f"{VENDOR}/swagger-ui/favicon-32x32.png"
# ReDoc 2.x draws its vendor's logo from a CDN; the policy keeps the page from asking for it.
LOCAL_ONLY = "; ".join(
    [
        "default-src 'self'",
        "img-src 'self' data:",
        "style-src 'self' 'unsafe-inline'",
        "script-src 'self' 'unsafe-inline'",  # FastAPI's pages start the UI inline
        "worker-src 'self' blob:",  # ReDoc's search runs in a blob worker
    ]
)


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    response = get_swagger_ui_html(
        openapi_url=request.app.openapi_url,
        title="vdc API",
        swagger_js_url=f"{VENDOR}/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url=f"{VENDOR}/swagger-ui/swagger-ui.css",
        swagger_favicon_url=FAVICON,
        oauth2_redirect_url="/docs/oauth2-redirect",
        # Not persistAuthorization: it would keep the raw API key in localStorage, where
        # any script of this origin (and anyone at the browser) could read it later.
        swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": False},
    )
    return _guarded(response)


@router.get("/docs/oauth2-redirect")
def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    response = get_redoc_html(
        openapi_url=request.app.openapi_url,
        title="vdc API",
        redoc_js_url=f"{VENDOR}/redoc/redoc.standalone.js",
        redoc_favicon_url=FAVICON,
        with_google_fonts=False,
    )
    return _guarded(response)


def _guarded(response: HTMLResponse) -> HTMLResponse:
    """Local assets only, and never inside another site's frame (clickjacking the
    Authorize dialog)."""
    response.headers["Content-Security-Policy"] = f"{LOCAL_ONLY}; frame-ancestors 'none'"
    response.headers["X-Frame-Options"] = "DENY"
    return response

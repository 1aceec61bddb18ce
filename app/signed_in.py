"""Whether a request is signed in, asked by the request guards (app/api/request_guards.py)
before any of its body is read: an API request by its bearer key, a page by its session
cookie. The routes check again as they always do; this only keeps anonymous bodies out."""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import Scope

from app.api.request_guards import SignedIn
from app.config import Settings
from app.errors import Unauthorized
from app.services.identity import api_keys
from app.web import session as web_session


def checker(settings: Settings, engine: sa.Engine) -> SignedIn:
    def key_is_valid(key: str) -> bool:
        with Session(engine) as session:
            try:
                api_keys.authenticate(session, key)
            except Unauthorized:
                return False
            return True

    def cookie_is_valid(cookie: str) -> bool:
        with Session(engine) as session:
            return web_session.read(session, settings, cookie) is not None

    async def signed_in(scope: Scope) -> bool:
        request = Request(scope)
        if scope["path"].startswith("/api/"):
            scheme, _, key = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not key.strip():
                return False
            return await run_in_threadpool(key_is_valid, key.strip())
        cookie = request.cookies.get(web_session.COOKIE)
        if not cookie:
            return False
        return await run_in_threadpool(cookie_is_valid, cookie)

    return signed_in

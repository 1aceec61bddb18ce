"""Whether a request is signed in, asked by the request guards (app/api/request_guards.py)
before any of its body is read: an API request by its bearer key, a page by its session
cookie. This keeps anonymous bodies out; an API route then takes the key's check from here
(app/api/deps.py) instead of asking the database again, and a page checks its cookie again."""

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

CHECKED_CALLER = "vdc_checked_caller"  # request.state: (key, ApiKey, Account) as checked


def checker(settings: Settings, engine: sa.Engine) -> SignedIn:
    def key_refusal(scope: Scope, key: str) -> str | None:
        with Session(engine) as session:
            try:
                caller = api_keys.authenticate(session, key)
            except Unauthorized as refusal:
                return refusal.detail
        # The route's own check (app/api/deps.py) takes this one rather than ask again.
        scope.setdefault("state", {})[CHECKED_CALLER] = (key, *caller)
        return None

    def cookie_refusal(cookie: str) -> str | None:
        with Session(engine) as session:
            if web_session.read(session, settings, cookie) is None:
                return "not signed in"
            return None

    async def signed_in(scope: Scope) -> str | None:
        """None when the request may send a body; else why not."""
        request = Request(scope)
        if scope["path"].startswith("/api/"):
            scheme, _, key = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not key.strip():
                return "missing API key: send `Authorization: Bearer <key>`"
            return await run_in_threadpool(key_refusal, scope, key.strip())
        cookie = request.cookies.get(web_session.COOKIE)
        if not cookie:
            return "not signed in"
        return await run_in_threadpool(cookie_refusal, cookie)

    return signed_in

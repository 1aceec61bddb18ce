"""Typed dependencies shared by every route: settings, a database session, the caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from app.config import Settings
from app.db import get_session
from app.errors import Forbidden, Unauthorized
from app.models import Account, ApiKey
from app.services.identity import api_keys
from app.signed_in import CHECKED_CALLER

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer vdc_...`")


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]


def current_caller(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> tuple[ApiKey, Account]:
    """The API key the request came with, and its account (checked once per request: a
    request with a body was checked before its body was read, app/signed_in.py)."""
    if credentials is None:
        raise Unauthorized("missing API key: send `Authorization: Bearer <key>`")
    checked = getattr(request.state, CHECKED_CALLER, None)
    if checked is not None and checked[0] == credentials.credentials:
        _, api_key, account = checked
        return session.merge(api_key, load=False), session.merge(account, load=False)
    return api_keys.authenticate(session, credentials.credentials)


def current_account(caller: Annotated[tuple[ApiKey, Account], Depends(current_caller)]) -> Account:
    return caller[1]


def current_key(caller: Annotated[tuple[ApiKey, Account], Depends(current_caller)]) -> ApiKey:
    return caller[0]


CurrentAccount = Annotated[Account, Depends(current_account)]
CurrentKey = Annotated[ApiKey, Depends(current_key)]


def admin_account(account: CurrentAccount) -> Account:
    if not account.is_admin:
        raise Forbidden("this operation needs an admin API key")
    return account


AdminAccount = Annotated[Account, Depends(admin_account)]

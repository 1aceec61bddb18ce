"""Typed dependencies shared by every route: settings, a database session, the caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from app.config import Settings
from app.db import get_session
from app.errors import Forbidden, Unauthorized
from app.models import Account
from app.services.identity import api_keys

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer vdc_...`")


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]


def current_account(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Account:
    if credentials is None:
        raise Unauthorized("missing API key: send `Authorization: Bearer <key>`")
    _key, account = api_keys.authenticate(session, credentials.credentials)
    return account


CurrentAccount = Annotated[Account, Depends(current_account)]


def admin_account(account: CurrentAccount) -> Account:
    if not account.is_admin:
        raise Forbidden("this operation needs an admin API key")
    return account


AdminAccount = Annotated[Account, Depends(admin_account)]

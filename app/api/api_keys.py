"""/api/v1/api_keys: your API keys, listed by id and prefix (never the key), issued (shown
once) and revoked (at once, with the web sessions they opened)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from app.api.deps import CurrentAccount, SessionDep
from app.api.paging import PageDep
from app.models.account import ApiKey, ApiKeyCreate, ApiKeyPublic, ApiKeyWithSecret
from app.models.common import Page
from app.services.identity import accounts, api_keys

router = APIRouter(prefix="/api_keys", tags=["api keys"])


def _public(row: ApiKey) -> ApiKeyPublic:
    return ApiKeyPublic.model_validate(row, from_attributes=True)


@router.get("", response_model=Page[ApiKeyPublic])
def list_keys(
    session: SessionDep,
    account: CurrentAccount,
    page: PageDep,
    account_id: Annotated[str | None, Query(max_length=32, description="Admins only")] = None,
) -> Page[ApiKeyPublic]:
    """Your keys, revoked ones included (an admin sees every account's)."""
    rows, total = api_keys.list_keys(session, account, page, account_id=account_id)
    return Page(items=[_public(r) for r in rows], total=total, limit=page.limit, offset=page.offset)


@router.post("", response_model=ApiKeyWithSecret, status_code=status.HTTP_201_CREATED)
def issue_key(
    body: ApiKeyCreate, response: Response, session: SessionDep, account: CurrentAccount
) -> ApiKeyWithSecret:
    """Issues another key for you (an admin: for any account); the answer holds the key,
    which is never shown again."""
    row, key = accounts.issue_key(session, account, body.name, body.account_id)
    response.headers["Cache-Control"] = "no-store"
    return ApiKeyWithSecret(**_public(row).model_dump(), api_key=key)


@router.get("/{key_id}", response_model=ApiKeyPublic)
def show_key(key_id: str, session: SessionDep, account: CurrentAccount) -> ApiKeyPublic:
    return _public(api_keys.get_key(session, account, key_id))


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_key(key_id: str, session: SessionDep, account: CurrentAccount) -> None:
    """Revokes a key: it is refused from now on, and its web UI sessions end. Revoking the
    key you call with, or your last key, is allowed (an admin can issue you a new one)."""
    api_keys.revoke(session, account, key_id)

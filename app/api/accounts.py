"""/api/v1/accounts: admin-only account management (keys are shown once, at creation)."""

from __future__ import annotations

from fastapi import APIRouter, status

from app.api.deps import AdminAccount, CurrentAccount, SessionDep
from app.models.account import AccountCreate, AccountPublic, AccountWithKey
from app.models.common import Page
from app.services.identity import accounts

router = APIRouter(prefix="/accounts", tags=["accounts"])


@router.get("/me", response_model=AccountPublic)
def who_am_i(account: CurrentAccount) -> AccountPublic:
    """The account the API key belongs to."""
    return AccountPublic.model_validate(account, from_attributes=True)


@router.get("", response_model=Page[AccountPublic])
def list_accounts(session: SessionDep, _admin: AdminAccount) -> Page[AccountPublic]:
    rows = accounts.list_accounts(session)
    items = [AccountPublic.model_validate(row, from_attributes=True) for row in rows]
    return Page(items=items, total=len(items), limit=len(items), offset=0)


@router.post("", response_model=AccountWithKey, status_code=status.HTTP_201_CREATED)
def create_account(
    body: AccountCreate, session: SessionDep, _admin: AdminAccount
) -> AccountWithKey:
    """Creates an account and returns its API key; the key is never shown again."""
    account, key = accounts.create_account(
        session, body.name, is_admin=body.is_admin, description=body.description
    )
    session.commit()
    public = AccountPublic.model_validate(account, from_attributes=True)
    return AccountWithKey(**public.model_dump(), api_key=key)


@router.get("/{account_id}", response_model=AccountPublic)
def show_account(account_id: str, session: SessionDep, _admin: AdminAccount) -> AccountPublic:
    return AccountPublic.model_validate(
        accounts.get_account(session, account_id), from_attributes=True
    )


@router.delete("/{account_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_account(account_id: str, session: SessionDep, _admin: AdminAccount) -> None:
    accounts.delete_account(session, account_id)
    session.commit()

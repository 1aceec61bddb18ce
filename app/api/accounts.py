"""/api/v1/accounts: admin-only account management: create (the key is shown once), disable,
demote, delete. Keys themselves are /api/v1/api_keys."""

from __future__ import annotations

from fastapi import APIRouter, status

from app.api.deps import AdminAccount, CurrentAccount, SessionDep
from app.models.account import AccountCreate, AccountPublic, AccountUpdate, AccountWithKey
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


@router.patch("/{account_id}", response_model=AccountPublic)
def update_account(
    account_id: str, body: AccountUpdate, session: SessionDep, _admin: AdminAccount
) -> AccountPublic:
    """Disables or enables an account (disabled: its keys are refused and its web sessions
    end at once; its instances keep running), promotes or demotes it. The last enabled
    admin cannot be demoted or disabled (409); the system account cannot be disabled."""
    return AccountPublic.model_validate(
        accounts.update_account(session, account_id, body), from_attributes=True
    )


@router.delete("/{account_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_account(account_id: str, session: SessionDep, _admin: AdminAccount) -> None:
    """Deletes an account with nothing live (409 says what is left, or disable it instead).
    Its key pairs and groups go with it; if terminated instances or deleted volumes name it,
    its row stays as their owner, hidden, its keys revoked and its name free again."""
    accounts.delete_account(session, account_id)
    session.commit()

"""/api/v1/accounts/{id}/quota: an account's limits and usage; admins change the limits."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import AdminAccount, CurrentAccount, SessionDep, SettingsDep
from app.models.quota import QuotaPublic, QuotaUpdate
from app.services.identity import account_quotas

router = APIRouter(prefix="/accounts", tags=["quotas"])


@router.get("/{account_id}/quota", response_model=QuotaPublic)
def show_quota(
    account_id: str, session: SessionDep, settings: SettingsDep, account: CurrentAccount
) -> QuotaPublic:
    """Each limit (-1: unlimited) with what the account holds. Your own (`me` will do), or
    any account's with an admin key; another account's is a 404."""
    target = account_quotas.readable_account(session, account, account_id)
    return account_quotas.show(session, settings, target)


@router.put("/{account_id}/quota", response_model=QuotaPublic)
def replace_quota(
    account_id: str,
    body: QuotaUpdate,
    session: SessionDep,
    settings: SettingsDep,
    _admin: AdminAccount,
) -> QuotaPublic:
    """Admins: sets every limit; those left out (or null) follow the VDC_QUOTA_* defaults."""
    return account_quotas.set_limits(session, settings, account_id, body.model_dump())


@router.patch("/{account_id}/quota", response_model=QuotaPublic)
def update_quota(
    account_id: str,
    body: QuotaUpdate,
    session: SessionDep,
    settings: SettingsDep,
    _admin: AdminAccount,
) -> QuotaPublic:
    """Admins: changes only the limits sent; null puts one back to its default."""
    changes = body.model_dump(exclude_unset=True)
    return account_quotas.set_limits(session, settings, account_id, changes)

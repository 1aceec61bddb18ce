"""An account's quota as the API, the web UI and vdc-manage show and change it: limits with
their usage; admins set per-account limits (null: back to the VDC_QUOTA_* default)."""

from __future__ import annotations

from collections.abc import Mapping

from sqlmodel import Session

from app.config import Settings
from app.errors import BadRequest, NotFound
from app.models import Account, AccountQuota
from app.models.common import utcnow
from app.models.quota import QUOTAS, QuotaItem, QuotaPublic
from app.services import quotas
from app.services.identity.accounts import get_account

ME = "me"


def readable_account(session: Session, actor: Account, account_id: str) -> Account:
    """The account (id, name, or `me`) whose quota `actor` may read: its own, or any for an
    admin. Another account is not found, exactly as one that does not exist."""
    if account_id == ME:
        return actor
    try:
        account = get_account(session, account_id)
    except NotFound:
        account = None
    if account is None or (account.id != actor.id and not actor.is_admin):
        raise NotFound.resource("account", account_id)
    return account


def show(session: Session, settings: Settings, account: Account) -> QuotaPublic:
    limits = quotas.limits(session, settings, account.id)
    used = quotas.usage(session, account.id)
    own = quotas.overrides(session, account.id)
    exempt = quotas.is_exempt(account.id)
    items = {
        name: QuotaItem(
            limit=limits[name], used=used[name], is_default=own[name] is None and not exempt
        )
        for name in QUOTAS
    }
    return QuotaPublic(account_id=account.id, exempt=exempt, **items)


def set_limits(
    session: Session, settings: Settings, account_id: str, changes: Mapping[str, int | None]
) -> QuotaPublic:
    """Sets the limits named in `changes` (None: the default again) and commits. Lowering a
    limit below the usage takes nothing away; it refuses what would add more."""
    account = get_account(session, account_id)
    if quotas.is_exempt(account.id):
        raise BadRequest(f"{account.id} is the system account: no quota applies to it")
    unknown = set(changes) - set(QUOTAS)
    assert not unknown, f"unknown quotas {unknown}"
    quotas.lock_account(session, account.id)  # two admins' first changes make one row
    row = session.get(AccountQuota, account.id) or AccountQuota(account_id=account.id)
    for name, value in changes.items():
        setattr(row, name, value)
    row.updated_at = utcnow()
    session.add(row)
    session.commit()
    return show(session, settings, account)

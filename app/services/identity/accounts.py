"""Accounts: created with a first API key, disabled and enabled, promoted and demoted (there
is always an enabled admin), and deleted (softly when they leave history behind)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from app.errors import BadRequest, Conflict, NotFound
from app.ids import SHARED_ACCOUNT_ID, new_id
from app.models import (
    Account,
    ApiKey,
    Image,
    Instance,
    InstanceSecurityGroup,
    Network,
    SecurityGroup,
    SecurityGroupRule,
    SshKeyPair,
    Volume,
)
from app.models.account import AccountUpdate
from app.models.common import utcnow
from app.models.instance import InstanceState
from app.models.volume import VolumeState
from app.services.identity import api_keys
from app.services.network.security_groups import default_group


def create_account(
    session: Session, name: str, *, is_admin: bool = False, description: str = ""
) -> tuple[Account, str]:
    """Creates an account and its first API key; the key is returned only here."""
    if session.exec(select(Account).where(Account.name == name)).first():
        raise Conflict(f"an account named {name!r} already exists")
    account = Account(id=new_id("account"), name=name, is_admin=is_admin, description=description)
    session.add(account)
    session.flush()
    default_group(session, account.id)  # members reach each other, nothing else comes in
    return account, api_keys.issue(session, account)[1]


def issue_key(
    session: Session, caller: Account, name: str = "", account_id: str | None = None
) -> tuple[ApiKey, str]:
    """Another key for the caller, or (admins) for any account; committed. Another
    account is not found for a user, as every other account's resource is."""
    owner = caller
    if account_id is not None and caller.is_admin:
        owner = get_account(session, account_id)
    elif account_id is not None and account_id not in (caller.id, caller.name):
        raise NotFound.resource("account", account_id)
    row, key = api_keys.issue(session, owner, name)
    session.commit()
    return row, key


def get_account(session: Session, account_id: str) -> Account:
    """An account by id or name (operators remember names); deleted ones are not found."""
    account = session.get(Account, account_id)
    if account is None or account.deleted_at is not None:
        account = session.exec(
            select(Account).where(Account.name == account_id, col(Account.deleted_at).is_(None))
        ).first()
    if account is None:
        raise NotFound.resource("account", account_id)
    return account


def list_accounts(session: Session) -> list[Account]:
    return list(
        session.exec(
            select(Account)
            .where(col(Account.deleted_at).is_(None))
            .order_by(col(Account.created_at), col(Account.id))
        )
    )


def update_account(session: Session, account_id: str, body: AccountUpdate) -> Account:
    """Changes the fields sent. Disabling refuses the account's keys and ends its web
    sessions at once (its instances keep running); demoting or disabling the last enabled
    admin is refused, so someone can always manage vdc through the API."""
    account = get_account(session, account_id)
    changes = body.model_dump(exclude_unset=True)
    for field, value in changes.items():
        if value is None:
            raise BadRequest(f"{field} cannot be null")
    if account.is_system and (changes.get("disabled") or changes.get("is_admin")):
        raise BadRequest(f"{account.id} is a system account: it cannot be disabled or an admin")
    stops_being_admin = changes.get("is_admin") is False or changes.get("disabled") is True
    if account.is_admin and account.disabled_at is None and stops_being_admin:
        _keep_an_admin(session, account)
    if "description" in changes:
        account.description = changes["description"]
    if "is_admin" in changes:
        account.is_admin = changes["is_admin"]
    if changes.get("disabled") and account.disabled_at is None:
        account.disabled_at = utcnow()
        api_keys.end_sessions(session, account_id=account.id)
    elif changes.get("disabled") is False:
        account.disabled_at = None  # its keys work again; its ended sessions stay ended
    session.add(account)
    session.commit()
    return account


def _keep_an_admin(session: Session, account: Account) -> None:
    # FOR UPDATE (PostgreSQL): two admins demoting each other at once wait for each other,
    # and the second sees the first's change. SQLite runs one writer at a time anyway.
    admins = session.exec(
        select(Account.id)
        .where(
            col(Account.is_admin),
            col(Account.disabled_at).is_(None),
            col(Account.deleted_at).is_(None),
        )
        .with_for_update()
    ).all()
    if not set(admins) - {account.id}:
        raise Conflict(
            f"{account.id} is the last enabled admin; promote or enable another admin first"
        )


def delete_account(session: Session, account_id: str) -> None:
    """Deletes an account that has nothing live (instances, volumes, images, networks).

    Its key pairs and security groups go with it. If terminated instances or deleted
    volumes still name it, its row stays as their owner, marked deleted and disabled, with
    its keys revoked and its name freed (renamed `NAME~ID`); otherwise the row goes too.
    """
    account = get_account(session, account_id)
    if account.is_system:
        raise BadRequest(f"{account.id} is a system account and cannot be deleted")
    if account.is_admin and account.disabled_at is None:
        _keep_an_admin(session, account)
    instances = _count(session, Instance, account, Instance.state != InstanceState.terminated)
    volumes = _count(session, Volume, account, Volume.state != VolumeState.deleted)
    images, networks = _count(session, Image, account), _count(session, Network, account)
    live = [
        f"{count} {what}"
        for count, what in (
            (instances, "live instance(s)"),
            (volumes, "volume(s)"),
            (images, "image(s)"),
            (networks, "network(s)"),
        )
        if count
    ]
    if live:
        raise Conflict(
            f"account {account.id} still has {', '.join(live)}: terminate or delete them "
            'first, or disable the account instead (PATCH {"disabled": true}; '
            "`vdc-manage account disable`), which stops it at once and keeps its things"
        )
    _delete_own_things(session, account)
    history = _count(session, Instance, account) + _count(session, Volume, account)
    if not history:
        session.delete(account)  # its keys and their sessions go by ON DELETE CASCADE
        return
    now = utcnow()
    api_keys.end_sessions(session, account_id=account.id)
    session.execute(
        sa.update(ApiKey)
        .where(col(ApiKey.account_id) == account.id, col(ApiKey.revoked_at).is_(None))
        .values(revoked_at=now)
    )
    account.name = f"{account.name[: 63 - len(account.id)]}~{account.id}"
    account.deleted_at = now
    account.disabled_at = account.disabled_at or now
    session.add(account)


def _count(
    session: Session,
    model: type[Instance] | type[Volume] | type[Image] | type[Network],
    account: Account,
    condition: Any = True,
) -> int:
    statement = select(sa.func.count()).select_from(model)
    return int(session.scalar(statement.where(model.account_id == account.id, condition)) or 0)


def _delete_own_things(session: Session, account: Account) -> None:
    """Key pairs and security groups: terminated instances forget them (as when they are
    deleted one by one)."""
    pairs = list(session.exec(select(SshKeyPair).where(SshKeyPair.account_id == account.id)))
    session.execute(
        sa.update(Instance)
        .where(col(Instance.ssh_key_id).in_([p.id for p in pairs]))
        .values(ssh_key_id=None)
    )
    for key_pair in pairs:
        session.delete(key_pair)
    groups = list(session.exec(select(SecurityGroup).where(SecurityGroup.account_id == account.id)))
    group_ids = [g.id for g in groups]
    for link in session.exec(
        select(InstanceSecurityGroup).where(col(InstanceSecurityGroup.group_id).in_(group_ids))
    ):
        session.delete(link)
    for rule in session.exec(
        select(SecurityGroupRule).where(col(SecurityGroupRule.group_id).in_(group_ids))
    ):
        session.delete(rule)
    session.flush()
    for group in groups:
        session.delete(group)
    session.flush()  # no ORM relationships tell SQLAlchemy to delete these first


def shared_account(session: Session) -> Account:
    return get_account(session, SHARED_ACCOUNT_ID)


def bootstrap_admin_key(session: Session, key_file: Path) -> bool:
    """On first start, creates an admin account and writes its key to a 0600 file.

    Returns True when a key was written now. Does nothing when the file exists, or when an
    admin account exists already (the operator then manages keys with vdc-manage).
    """
    if key_file.exists():
        return False
    if session.exec(select(Account).where(col(Account.is_admin))).first():
        return False
    _, key = create_account(session, "admin", is_admin=True, description="created on first start")
    key_file.parent.mkdir(parents=True, exist_ok=True)
    # Written 0600 from creation (never readable by others, not even briefly) to a temporary
    # name, renamed into place only once the account is committed: the file never holds a
    # key that the database does not know.
    temporary = key_file.with_name(key_file.name + ".tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    session.commit()
    temporary.rename(key_file)
    return True

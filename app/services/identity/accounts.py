"""Accounts and their API keys."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Session, col, select

from app.errors import BadRequest, Conflict, NotFound
from app.ids import SHARED_ACCOUNT_ID, new_id
from app.models import (
    Account,
    ApiKey,
    Image,
    Instance,
    SecurityGroup,
    SecurityGroupRule,
    SshKeyPair,
    Volume,
)
from app.services.network.security_groups import default_group

KEY_PREFIX = "vdc_"


def hash_key(key: str) -> str:
    # Keys are 256 random bits, so a plain SHA-256 is as strong as a slow KDF here and lets
    # authentication be one indexed lookup.
    return hashlib.sha256(key.encode()).hexdigest()


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
    return account, issue_key(session, account.id)


def issue_key(session: Session, account_id: str) -> str:
    get_account(session, account_id)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(
        ApiKey(
            id=new_id("api_key"),
            account_id=account_id,
            key_hash=hash_key(key),
            prefix=key[:10],
        )
    )
    session.flush()
    return key


def authenticate(session: Session, key: str) -> Account | None:
    if not key.startswith(KEY_PREFIX):
        return None
    digest = hash_key(key)
    api_key = session.exec(select(ApiKey).where(ApiKey.key_hash == digest)).first()
    if api_key is None or not hmac.compare_digest(api_key.key_hash, digest):
        return None
    return session.get(Account, api_key.account_id)


def get_account(session: Session, account_id: str) -> Account:
    account = session.get(Account, account_id)
    if account is None:
        # Accept the name too: operators remember names, not ids.
        account = session.exec(select(Account).where(Account.name == account_id)).first()
    if account is None:
        raise NotFound.resource("account", account_id)
    return account


def list_accounts(session: Session) -> list[Account]:
    return list(session.exec(select(Account).order_by(col(Account.created_at))))


def delete_account(session: Session, account_id: str) -> None:
    account = get_account(session, account_id)
    if account.is_system:
        raise BadRequest(f"{account.id} is a system account and cannot be deleted")
    for model, what in (
        (Image, "image(s)"),
        (Instance, "instance(s), terminated ones included"),
        (Volume, "volume(s), deleted ones included"),
    ):
        owned = session.scalar(
            select(sa.func.count()).select_from(model).where(model.account_id == account.id)
        )
        if owned:
            raise Conflict(f"account {account.id} still owns {owned} {what}")
    # Key pairs, security groups and API keys are the account's own and go with it (with
    # no instance left, no group has members).
    for key_pair in session.exec(select(SshKeyPair).where(SshKeyPair.account_id == account.id)):
        session.delete(key_pair)
    groups = list(session.exec(select(SecurityGroup).where(SecurityGroup.account_id == account.id)))
    for rule in session.exec(
        select(SecurityGroupRule).where(col(SecurityGroupRule.group_id).in_([g.id for g in groups]))
    ):
        session.delete(rule)
    session.flush()
    for group in groups:
        session.delete(group)
    session.flush()  # no ORM relationships tell SQLAlchemy to delete these first
    session.delete(account)


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

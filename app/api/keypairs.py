"""/api/v1/ssh_key_pairs: import a public key, generate a pair, list, show, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from app.api.deps import CurrentAccount, SessionDep, SettingsDep
from app.api.paging import PageDep
from app.models.common import Page
from app.models.keypair import (
    KeyPairGenerate,
    KeyPairImport,
    KeyPairPublic,
    KeyPairWithPrivateKey,
    SshKeyPair,
)
from app.services import access
from app.services.identity import keypairs

router = APIRouter(prefix="/ssh_key_pairs", tags=["ssh key pairs"])


def _public(keypair: SshKeyPair) -> KeyPairPublic:
    return KeyPairPublic.model_validate(keypair, from_attributes=True)


@router.get("", response_model=Page[KeyPairPublic])
def list_keypairs(
    session: SessionDep,
    account: CurrentAccount,
    page: PageDep,
    name: Annotated[str | None, Query(max_length=255)] = None,
    account_id: Annotated[str | None, Query(max_length=32, description="Admins only")] = None,
) -> Page[KeyPairPublic]:
    """Your key pairs (an admin sees all)."""
    rows, total = keypairs.list_keypairs(session, account, page, name=name, account_id=account_id)
    return Page(items=[_public(r) for r in rows], total=total, limit=page.limit, offset=page.offset)


@router.post("", response_model=KeyPairPublic, status_code=status.HTTP_201_CREATED)
def import_keypair(
    body: KeyPairImport, session: SessionDep, settings: SettingsDep, account: CurrentAccount
) -> KeyPairPublic:
    """Registers a public key: one line of an OpenSSH `.pub` file."""
    return _public(keypairs.import_key(session, settings, account, body.name, body.public_key))


@router.post("/generate", response_model=KeyPairWithPrivateKey, status_code=status.HTTP_201_CREATED)
def generate_keypair(
    body: KeyPairGenerate,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    account: CurrentAccount,
) -> KeyPairWithPrivateKey:
    """Creates a key pair; the answer holds the private key, which vdc does not keep."""
    keypair, private_key = keypairs.generate_key(
        session, settings, account, body.name, body.key_type
    )
    # The only copy of a secret: no proxy or browser cache may keep one too.
    response.headers["Cache-Control"] = "no-store"
    return KeyPairWithPrivateKey(**_public(keypair).model_dump(), private_key=private_key)


@router.get("/{keypair_id}", response_model=KeyPairPublic)
def show_keypair(keypair_id: str, session: SessionDep, account: CurrentAccount) -> KeyPairPublic:
    return _public(access.get(session, account, SshKeyPair, keypair_id))


@router.delete("/{keypair_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_keypair(keypair_id: str, session: SessionDep, account: CurrentAccount) -> None:
    """Deletes a key pair (refused while a live instance uses it)."""
    keypairs.delete_keypair(session, account, keypair_id)

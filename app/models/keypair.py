"""SSH key pairs (`ssh-...`): public keys an account hands to its instances (metadata
`public-keys/`); vdc never keeps a private key."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from pydantic import BaseModel
from pydantic import Field as PydanticField
from sqlmodel import Field, SQLModel

from app.models.common import timestamp_column, utcnow


class SshKeyPair(SQLModel, table=True):
    __tablename__ = "ssh_key_pairs"
    __table_args__ = (sa.UniqueConstraint("account_id", "name", name="uq_keypair_name"),)

    id: str = Field(primary_key=True, max_length=32)
    account_id: str = Field(foreign_key="accounts.id", index=True, max_length=32)
    name: str = Field(max_length=255)
    key_type: str = Field(max_length=32)  # ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256, ...
    public_key: str = Field(max_length=16384)  # one OpenSSH line
    fingerprint: str = Field(max_length=64)  # SHA256:..., as `ssh-keygen -l` prints it
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())


class KeyPairImport(BaseModel):
    name: str = PydanticField(
        min_length=1, max_length=255, pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.@-]*$"
    )
    public_key: str = PydanticField(
        min_length=1, max_length=16384, description="One OpenSSH public key line"
    )


class KeyPairGenerate(BaseModel):
    name: str = PydanticField(
        min_length=1, max_length=255, pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.@-]*$"
    )
    key_type: str = PydanticField(
        default="ssh-ed25519", description="ssh-ed25519, ssh-rsa or ecdsa-sha2-nistp256"
    )


class KeyPairPublic(BaseModel):
    id: str
    account_id: str
    name: str
    key_type: str
    public_key: str
    fingerprint: str
    created_at: datetime


class KeyPairWithPrivateKey(KeyPairPublic):
    """Answer to generation: the only time the private key exists outside the caller."""

    private_key: str

"""SSH key pair use cases: import a public key, generate a pair, list, show, delete.

vdc keeps public keys only. A generated private key is handed back once and forgotten.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.config import Settings
from app.errors import BadRequest, Conflict
from app.ids import new_id
from app.models import Account, Instance, SshKeyPair
from app.models.instance import InstanceState
from app.services import access, quotas
from app.services.listing import PageRequest

SORTABLE = ("created_at", "name", "key_type", "id")
MIN_RSA_BITS = 2048
GENERATED_RSA_BITS = 3072

# The OpenSSH type name each accepted key must carry, and the curve it names.
ECDSA_CURVES = {
    "ecdsa-sha2-nistp256": "secp256r1",
    "ecdsa-sha2-nistp384": "secp384r1",
    "ecdsa-sha2-nistp521": "secp521r1",
}
ACCEPTED_TYPES = ("ssh-ed25519", "ssh-rsa", *ECDSA_CURVES)
GENERATED_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256")
ACCEPTED_HELP = "use ssh-ed25519, ssh-rsa (2048 bits or more) or ecdsa-sha2-nistp256/384/521"


@dataclass(frozen=True)
class ParsedKey:
    key_type: str
    key_data: str  # canonical base64 of the key blob
    comment: str
    fingerprint: str

    def line(self, fallback_comment: str) -> str:
        return f"{self.key_type} {self.key_data} {self.comment or fallback_comment}"


# --- parsing -----------------------------------------------------------------------------


def parse_public_key(text: str) -> ParsedKey:
    """One OpenSSH public key line (`<type> <base64> [comment]`), checked and normalised.

    Every refusal says what was wrong and what to paste instead: people paste the wrong
    file, or a whole authorized_keys, far more often than a forged key.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if any("PRIVATE KEY" in line or line.startswith("PuTTY-User-Key-File") for line in lines):
        raise BadRequest("this is a private key; paste the .pub file")
    if not lines:
        raise BadRequest("the public key is empty")
    if "BEGIN SSH2 PUBLIC KEY" in lines[0]:
        raise BadRequest("this is an RFC 4716 key; convert it with `ssh-keygen -i -f FILE`")
    if "BEGIN PUBLIC KEY" in lines[0]:
        raise BadRequest("this is a PEM key; convert it with `ssh-keygen -i -m PKCS8 -f FILE`")
    if len(lines) > 1:
        raise BadRequest(f"give one public key per key pair, not {len(lines)} lines")
    fields = lines[0].split(None, 2)
    if len(fields) < 2:
        raise BadRequest("not an OpenSSH public key line (`<type> <base64> [comment]`)")
    key_type, key_data = fields[0], fields[1]
    if key_type not in ACCEPTED_TYPES:
        if key_type.startswith(("ssh-", "ecdsa-", "sk-")) or "@openssh.com" in key_type:
            raise BadRequest(f"{key_type} keys are not accepted; {ACCEPTED_HELP}")
        # authorized_keys options (`command="..." ssh-rsa ...`) land here too.
        raise BadRequest("not an OpenSSH public key line (`<type> <base64> [comment]`)")
    try:
        # Strict base64 first: cryptography's decoder skips stray characters.
        base64.b64decode(key_data, validate=True)
        key = serialization.load_ssh_public_key(f"{key_type} {key_data}".encode())
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"the key data is not a valid {key_type} key") from exc
    _check_strength(key_type, key)
    return _parsed(key, _clean_comment(fields[2] if len(fields) > 2 else ""))


def _clean_comment(comment: str) -> str:
    # Single spaces and printable characters only: the comment is copied into
    # authorized_keys files and shown on terminals.
    words = ("".join(c for c in word if c.isprintable()) for word in comment.split())
    return " ".join(word for word in words if word)


def _check_strength(key_type: str, key: PublicKeyTypes) -> None:
    if key_type == "ssh-rsa":
        assert isinstance(key, rsa.RSAPublicKey)
        if key.key_size < MIN_RSA_BITS:
            raise BadRequest(
                f"RSA keys must be at least {MIN_RSA_BITS} bits, this one has {key.key_size}"
            )
    elif key_type in ECDSA_CURVES:
        assert isinstance(key, ec.EllipticCurvePublicKey)
        if key.curve.name != ECDSA_CURVES[key_type]:
            raise BadRequest(f"the key data is not a valid {key_type} key")


def _parsed(key: PublicKeyTypes, comment: str) -> ParsedKey:
    key_type, key_data = (
        key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
        .split()
    )
    return ParsedKey(key_type, key_data, comment, fingerprint(base64.b64decode(key_data)))


def fingerprint(blob: bytes) -> str:
    """`SHA256:...` exactly as `ssh-keygen -l` prints it: unpadded base64 of the blob's digest."""
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


# --- creating ----------------------------------------------------------------------------


def import_key(
    session: Session, settings: Settings, account: Account, name: str, public_key: str
) -> SshKeyPair:
    """Stores one public key for `account` under `name` (the comment, if the key had none)."""
    return _store(session, settings, account, name, parse_public_key(public_key))


def generate_key(
    session: Session,
    settings: Settings,
    account: Account,
    name: str,
    key_type: str = "ssh-ed25519",
) -> tuple[SshKeyPair, str]:
    """Makes a new pair; stores the public half and returns the private key (OpenSSH PEM)."""
    if key_type not in GENERATED_TYPES:
        raise BadRequest(f"cannot generate {key_type!r}; choose {', '.join(GENERATED_TYPES)}")
    _refuse_duplicate(session, account, name)  # before spending time on an RSA key
    quotas.check(session, settings, account.id, lock=False, key_pairs=1)  # likewise
    private: PrivateKeyTypes
    if key_type == "ssh-ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
    elif key_type == "ssh-rsa":
        private = rsa.generate_private_key(public_exponent=65537, key_size=GENERATED_RSA_BITS)
    else:
        private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    return _store(session, settings, account, name, _parsed(private.public_key(), "")), pem


def _refuse_duplicate(session: Session, account: Account, name: str) -> None:
    taken = session.exec(
        select(SshKeyPair).where(SshKeyPair.account_id == account.id, SshKeyPair.name == name)
    ).first()
    if taken is not None:
        raise Conflict(f"account {account.id} already has a key pair named {name!r} ({taken.id})")


def _store(
    session: Session, settings: Settings, account: Account, name: str, key: ParsedKey
) -> SshKeyPair:
    _refuse_duplicate(session, account, name)
    quotas.check(session, settings, account.id, key_pairs=1)
    keypair = SshKeyPair(
        id=new_id("ssh_key"),
        account_id=account.id,
        name=name,
        key_type=key.key_type,
        public_key=key.line(name),
        fingerprint=key.fingerprint,
    )
    session.add(keypair)
    try:
        session.commit()
    except IntegrityError as exc:
        # Two imports of the same name raced past the check above; the unique constraint won.
        session.rollback()
        raise Conflict(f"account {account.id} already has a key pair named {name!r}") from exc
    return keypair


# --- reading and deleting ----------------------------------------------------------------


def list_keypairs(
    session: Session, account: Account, page: PageRequest, **filters: object
) -> tuple[list[SshKeyPair], int]:
    return access.page(session, account, SshKeyPair, page, SORTABLE, filters)


def delete_keypair(session: Session, account: Account, keypair_id: str) -> None:
    """Deletes a key pair no live instance uses; terminated instances just forget it."""
    keypair = access.get(session, account, SshKeyPair, keypair_id)
    users = session.exec(
        select(Instance.id)
        .where(Instance.ssh_key_id == keypair.id, Instance.state != InstanceState.terminated)
        .order_by(col(Instance.id))
    ).all()
    if users:
        raise Conflict(
            f"key pair {keypair.id} is used by instance(s) {', '.join(users)}; terminate them first"
        )
    # A terminated instance keeps its row as history; its reference must go for the
    # foreign key to let the key pair go.
    session.execute(
        sa.update(Instance).where(col(Instance.ssh_key_id) == keypair.id).values(ssh_key_id=None)
    )
    session.delete(keypair)
    try:
        session.commit()
    except IntegrityError as exc:
        # An instance was launched with this key between the check and the delete.
        session.rollback()
        raise Conflict(f"key pair {keypair.id} was just given to an instance") from exc

"""Who is asking: the instance behind a metadata request.

Guests reach 169.254.169.254:80, which each host DNATs to the metadata listener at the
guest network's gateway address, keeping the guest's source address. So a request is
answered only when its source address is a live instance's lease *and* it arrived at the
gateway of that lease's network; a machine elsewhere whose address happens to equal a
guest's gets nothing. A metadata proxy on a remote host may instead forward with
`X-Forwarded-For` plus `X-Instance-ID` and an HMAC of it (the Neutron pattern); those
headers count only when the signature checks out, and are ignored otherwise.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

SIGNATURE_HEADER = "x-instance-id-signature"
INSTANCE_HEADER = "x-instance-id"
FORWARDED_HEADER = "x-forwarded-for"


@dataclass(frozen=True)
class Lease:
    instance_id: str
    ip: str
    gateway: str
    http_tokens: str = "optional"  # read with the lease: a change applies at once
    # When the instance last changed (a volume attached, ...): the tree cache's key, so a
    # change shows at once instead of when a cached tree expires.
    version: str = ""

    @property
    def tree_key(self) -> str:
        return f"{self.instance_id}@{self.version}"


def sign(secret: bytes, instance_id: str) -> str:
    return hmac.new(secret, instance_id.encode(), hashlib.sha256).hexdigest()


def signed_forward(
    headers: Mapping[str, str], proxy_secret: bytes | None
) -> tuple[str, str] | None:
    """(instance id, forwarded address) when a proxy vouched for the request, else None."""
    if not proxy_secret:
        return None
    instance_id = headers.get(INSTANCE_HEADER, "")
    signature = headers.get(SIGNATURE_HEADER, "")
    forwarded = headers.get(FORWARDED_HEADER, "").split(",")[0].strip()
    if not (instance_id and signature and forwarded):
        return None
    # As bytes: compare_digest refuses str holding non-ASCII, which a client controls.
    if not hmac.compare_digest(signature.encode(), sign(proxy_secret, instance_id).encode()):
        return None
    return instance_id, forwarded


def accept_direct(lease: Lease | None, local_address: str) -> bool:
    """A direct request counts only when it came in at the lease's gateway (DNAT target)."""
    return lease is not None and lease.gateway == local_address

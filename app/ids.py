"""Wakame-style resource ids: a prefix and eight lowercase letters or digits (`wmi-3kx9a0qz`)."""

import secrets
import string

_ALPHABET = string.ascii_lowercase + string.digits

PREFIXES = {
    "account": "a",
    "api_key": "key",
    "image": "wmi",
    "instance": "i",
    "volume": "vol",
    "security_group": "sg",
    "ssh_key": "ssh",
    "network": "nw",
    "host_node": "hn",
    "interface": "vif",
    "job": "job",
}

SHARED_ACCOUNT_ID = "a-shpoolxx"


def new_id(kind: str) -> str:
    suffix = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    return f"{PREFIXES[kind]}-{suffix}"

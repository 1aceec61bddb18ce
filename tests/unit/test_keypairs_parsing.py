"""Parsing OpenSSH public key lines: what is accepted, every refusal, and fingerprints that
match `ssh-keygen -lf` byte for byte."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from app.errors import BadRequest
from app.services.identity.keypairs import parse_public_key

# Made with `ssh-keygen -t ... -C me@host` (OpenSSH 9); fingerprints from `ssh-keygen -lf`.
ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBAKsVvhw+JOaikVe24myi96R0Hc+xd2ISGd+YfFty5o"
ECDSA_384 = "ecdsa-sha2-nistp384 " + (
    "AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBLaltR6t4Qpa2EMHt01Zhw7eKTtx"
    "yBuo6LKTNuWfupv/z1pCIx1+QCDBC5olPJO5ExNTqfaygogzlv0Ik9t8HG3h4smMFIE+mri+zb8QiHFZ"
    "96SXzLP62nd99RgGW/v3gw=="
)
RSA_2048 = "ssh-rsa " + (
    "AAAAB3NzaC1yc2EAAAADAQABAAABAQCsVW3TA3iLdhiJUydlzFv6bbFpjg2M2PC4rarDi2U7/wG/Fs0J"
    "5iEPRp+DNfNWVgOJQ2sSA6g3UEPyAgPT+YFCGvdRxB64pgTIh+Esxwz+mbQ8mN/bDvT+WYcXgnexUjRW"
    "MVW+Q5VXHjHqmzVbvXgx3w6qEsXona7AupUuhuo35vvGYxheYnkjNz8s4D2ifsxQVlFp629Dv/tttmNG"
    "3jscszSDtPNTVny/OUE5Vq59oTKff8uPVNEPCrjX6fTX8Bd/gFQTeUhsnNA1CIDrN8XrqQf2JenreuyY"
    "hhiUW4J2cKSm4ByT9cORbqQxwur7NLo9UW2l5bzffHbf5m7O2bnd"
)
RSA_1024 = "ssh-rsa " + (
    "AAAAB3NzaC1yc2EAAAADAQABAAAAgQCmXGIrFhn5vvw3HZ744PbVPNGuBLsk6tVzjvhoOgpRx/vz14dF"
    "8OkwsHhQRZLpEk5n5OKChDNQh12OrGBQKSrHXDZdiGqRWxGpTkQzmoNLWjumHBZwrCPYHhfi0KvLadSu"
    "aXfBSgdC3ncGFFHl/ue5rPSC3SFpAPSCvMeIinu3dw=="
)


def openssh_line(private: PrivateKeyTypes, comment: str = "") -> str:
    line = (
        private.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    return f"{line} {comment}".rstrip()


def refusal(text: str) -> str:
    with pytest.raises(BadRequest) as raised:
        parse_public_key(text)
    return raised.value.detail


class TestAccepted:
    @pytest.mark.parametrize(
        ("line", "key_type", "expected"),
        [
            (ED25519, "ssh-ed25519", "SHA256:ueAA0X3z9oFLV/jY/KWyKQ4gJ6hLISmFQJr/gdJUMfY"),
            (
                ECDSA_384,
                "ecdsa-sha2-nistp384",
                "SHA256:4Kse112ex4gD2gAmEcDa0CCIcS6Y2QA+U6f86itRhsQ",
            ),
            (RSA_2048, "ssh-rsa", "SHA256:yNN655rH5+tkVVom4+Yhnv5SuYDrpWltOUc7AZq915s"),
        ],
    )
    def test_fingerprint_is_what_ssh_keygen_prints(
        self, line: str, key_type: str, expected: str
    ) -> None:
        parsed = parse_public_key(f"{line} me@host\n")
        assert parsed.key_type == key_type
        assert parsed.fingerprint == expected
        assert parsed.comment == "me@host"
        assert parsed.line("unused") == f"{line} me@host"

    @pytest.mark.parametrize(
        "private",
        [
            ed25519.Ed25519PrivateKey.generate(),
            rsa.generate_private_key(public_exponent=65537, key_size=2048),
            ec.generate_private_key(ec.SECP256R1()),
            ec.generate_private_key(ec.SECP384R1()),
            ec.generate_private_key(ec.SECP521R1()),
        ],
        ids=["ed25519", "rsa-2048", "nistp256", "nistp384", "nistp521"],
    )
    def test_generated_keys_of_every_accepted_type(self, private: PrivateKeyTypes) -> None:
        line = openssh_line(private)
        parsed = parse_public_key(line)
        key_type, key_data = line.split()
        assert (parsed.key_type, parsed.key_data) == (key_type, key_data)
        # Computed here from the definition: SHA-256 of the blob, base64 without padding.
        digest = hashlib.sha256(base64.b64decode(key_data)).digest()
        assert parsed.fingerprint == "SHA256:" + base64.b64encode(digest).decode().rstrip("=")
        assert "=" not in parsed.fingerprint

    def test_without_comment_the_fallback_names_the_key(self) -> None:
        parsed = parse_public_key(ED25519)
        assert parsed.comment == ""
        assert parsed.line("laptop") == f"{ED25519} laptop"

    @pytest.mark.parametrize(
        ("text", "comment"),
        [
            (f"  {ED25519}   alice@laptop  \r\n", "alice@laptop"),
            (f"\n\n{ED25519}\tmy   work\tkey\n\n", "my work key"),
            (f"{ED25519} bell\x07 and\x1b[31m escape", "bell and[31m escape"),
        ],
        ids=["surrounding-whitespace", "inner-whitespace", "control-characters"],
    )
    def test_whitespace_and_comment_are_normalised(self, text: str, comment: str) -> None:
        parsed = parse_public_key(text)
        assert parsed.comment == comment
        assert parsed.line("x") == f"{ED25519} {comment}"


class TestRefused:
    def test_rsa_under_2048_bits(self) -> None:
        assert refusal(RSA_1024) == "RSA keys must be at least 2048 bits, this one has 1024"
        small = rsa.generate_private_key(public_exponent=65537, key_size=1536)
        assert "this one has 1536" in refusal(openssh_line(small))

    @pytest.mark.parametrize(
        "key_type",
        ["ssh-dss", "sk-ssh-ed25519@openssh.com", "ssh-ed25519-cert-v01@openssh.com", "ssh-xmss"],
    )
    def test_other_key_types(self, key_type: str) -> None:
        detail = refusal(f"{key_type} AAAAB3NzaC1kc3MAAACBALtzOdM22WHVr6NYOW8m1Rkp me@host")
        assert detail.startswith(f"{key_type} keys are not accepted; use ssh-ed25519")

    @pytest.mark.parametrize(
        "text",
        [
            "hello world",
            "ssh-ed25519",
            "AAAAC3NzaC1lZDI1NTE5AAAAIBAKsVvhw+JOaikVe24myi96R0Hc+xd2ISGd+YfFty5o",
            f'command="/bin/date",no-pty {ED25519}',
        ],
        ids=["garbage", "type-only", "base64-only", "authorized-keys-options"],
    )
    def test_not_an_openssh_line(self, text: str) -> None:
        assert refusal(text).startswith("not an OpenSSH public key line")

    @pytest.mark.parametrize("text", ["", "   \n\t\n"])
    def test_empty(self, text: str) -> None:
        assert refusal(text) == "the public key is empty"

    @pytest.mark.parametrize(
        "data",
        [
            "AAAAC3NzaC1lZDI1NTE5AAAAIBAKsVvhw+JOaikVe24myi96R0Hc+xd2ISGd+YfF!y5o",  # bad base64
            "AAAAC3NzaC1lZDI1NTE5AAAAIBAKsVvhw+JOaikVe24myi96R0Hc+xd2ISGd",  # truncated
            base64.b64encode(base64.b64decode(ED25519.split()[1]) + b"trailing").decode(),
            RSA_2048.split()[1],  # an RSA blob under an ed25519 label
        ],
        ids=["bad-base64", "truncated", "bytes-after-the-key", "type-mismatch"],
    )
    def test_corrupt_key_data(self, data: str) -> None:
        assert refusal(f"ssh-ed25519 {data}") == "the key data is not a valid ssh-ed25519 key"

    def test_ecdsa_curve_must_match_its_type_name(self) -> None:
        detail = refusal(f"ecdsa-sha2-nistp256 {ECDSA_384.split()[1]}")
        assert detail == "the key data is not a valid ecdsa-sha2-nistp256 key"

    @pytest.mark.parametrize(
        "private",
        [
            ed25519.Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.OpenSSH,
                serialization.NoEncryption(),
            ),
            rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            ),
            b"PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\n",
        ],
        ids=["openssh", "pem-rsa", "putty"],
    )
    def test_private_key_pasted_by_mistake(self, private: bytes) -> None:
        assert refusal(private.decode()) == "this is a private key; paste the .pub file"

    def test_private_key_after_a_public_one_is_still_called_out(self) -> None:
        private = ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        assert "private key" in refusal(f"{ED25519}\n{private.decode()}")

    def test_two_lines(self) -> None:
        detail = refusal(f"{ED25519} a\n{RSA_2048} b\n")
        assert detail == "give one public key per key pair, not 2 lines"

    def test_other_public_key_formats_say_how_to_convert(self) -> None:
        rfc4716 = "---- BEGIN SSH2 PUBLIC KEY ----\nAAAAC3Nza\n---- END SSH2 PUBLIC KEY ----"
        assert "ssh-keygen -i -f" in refusal(rfc4716)
        pem = (
            ed25519.Ed25519PrivateKey.generate()
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
        assert "ssh-keygen -i -m PKCS8" in refusal(pem)

from __future__ import annotations

import pytest

from metadata import resolver, tokens

SECRET = b"s" * 32


def test_token_round_trip_binding_and_expiry() -> None:
    token = tokens.issue(SECRET, "i-one", 60, now=1000)
    tokens.verify(SECRET, token, "i-one", now=1059)
    with pytest.raises(tokens.TokenError, match="another instance"):
        tokens.verify(SECRET, token, "i-two", now=1000)
    with pytest.raises(tokens.TokenError, match="expired"):
        tokens.verify(SECRET, token, "i-one", now=1061)
    with pytest.raises(tokens.TokenError, match="signature"):
        tokens.verify(b"x" * 32, token, "i-one", now=1000)


@pytest.mark.parametrize("garbage", ["", "abc", "!!!", "a.b.c", "x" * 5000])
def test_garbage_tokens_are_refused(garbage: str) -> None:
    with pytest.raises(tokens.TokenError):
        tokens.verify(SECRET, garbage, "i-one")


@pytest.mark.parametrize("ttl", [0, 21601, -5])
def test_ttl_bounds(ttl: int) -> None:
    with pytest.raises(tokens.TokenError):
        tokens.issue(SECRET, "i-one", ttl)


def test_signed_forward_is_trusted_only_with_the_right_signature() -> None:
    good = {
        "x-forwarded-for": "10.0.0.5, 1.2.3.4",
        "x-instance-id": "i-one",
        "x-instance-id-signature": resolver.sign(SECRET, "i-one"),
    }
    assert resolver.signed_forward(good, SECRET) == ("i-one", "10.0.0.5")
    assert resolver.signed_forward(good, None) is None  # no proxy configured
    forged = {**good, "x-instance-id": "i-two"}
    assert resolver.signed_forward(forged, SECRET) is None
    unsigned = {"x-forwarded-for": "10.0.0.5"}
    assert resolver.signed_forward(unsigned, SECRET) is None


def test_direct_requests_count_only_at_the_gateway() -> None:
    lease = resolver.Lease(instance_id="i-one", ip="10.0.0.5", gateway="10.0.0.1")
    assert resolver.accept_direct(lease, "10.0.0.1")
    assert not resolver.accept_direct(lease, "192.168.1.10")
    assert not resolver.accept_direct(None, "10.0.0.1")


def test_a_token_whose_signature_is_not_ascii_is_refused_not_a_crash() -> None:
    """hmac.compare_digest raises TypeError on str holding non-ASCII: a 500 a client chose."""
    import base64

    crafted = base64.urlsafe_b64encode("i-abc.9999999999.é".encode()).decode()
    with pytest.raises(tokens.TokenError):
        tokens.verify(b"k" * 32, crafted, "i-abc")


def test_a_forwarded_signature_that_is_not_ascii_is_ignored() -> None:
    headers = {
        "x-instance-id": "i-abc",
        "x-instance-id-signature": "é" * 64,
        "x-forwarded-for": "10.0.0.5",
    }
    assert resolver.signed_forward(headers, b"secret") is None

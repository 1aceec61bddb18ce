"""The metadata listener's connection caps (metadata/limits.py)."""

from __future__ import annotations

from metadata.limits import ConnectionLimits


def test_past_a_sources_share_429_past_the_total_503_and_a_release_frees_a_place() -> None:
    limits = ConnectionLimits(max_connections=3, max_per_source=2)
    assert limits.admit("10.0.0.5") is None
    assert limits.admit("10.0.0.5") is None
    too_many = limits.admit("10.0.0.5")
    assert too_many is not None and too_many.status == 429
    assert too_many.answer.startswith(b"HTTP/1.1 429") and b"Retry-After: 1" in too_many.answer

    assert limits.admit("10.0.0.6") is None
    busy = limits.admit("10.0.0.7")  # three open in all
    assert busy is not None and busy.status == 503 and busy.answer.startswith(b"HTTP/1.1 503")

    limits.release("10.0.0.5")
    assert limits.admit("10.0.0.7") is None  # the place it freed
    assert limits.admit("10.0.0.8") is not None
    for source in ("10.0.0.5", "10.0.0.6", "10.0.0.7"):
        limits.release(source)
    assert (limits.total, dict(limits.open)) == (0, {})  # nothing left behind per source

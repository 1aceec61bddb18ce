"""The metadata process's counts (metadata/stats.py) and how GET /metrics reads them back
(app.metrics.metadata_families): buckets, kinds, the snapshot file."""

from __future__ import annotations

import stat
from pathlib import Path

from app.metrics import METADATA_BUCKETS, metadata_families
from metadata.stats import Publisher, RequestStats


def samples(snapshot: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in metadata_families(snapshot)
        for s in family.samples
    }


def test_a_bound_is_its_own_bucket_and_beyond_the_last_is_inf() -> None:
    stats = RequestStats()
    stats.observe("/latest/meta-data/instance-id", 200, 0.0005)  # le="0.0005"
    stats.observe("/latest/meta-data/hostname", 200, 0.00051)  # le="0.001"
    stats.observe("/latest/meta-data/", 404, 3.0)  # le="+Inf" only
    snapshot = stats.snapshot()
    counts = snapshot["durations"]["meta-data"]["counts"]
    assert counts[0] == 1 and counts[1] == 1 and counts[-1] == 1
    assert sum(counts) == 3 and len(counts) == len(METADATA_BUCKETS) + 1
    assert sorted(snapshot["requests"]) == [["meta-data", 200, 2], ["meta-data", 404, 1]]


def test_the_snapshot_reads_back_as_prometheus_families(tmp_path: Path) -> None:
    stats = RequestStats()
    for path, status, seconds in (
        ("/latest/user-data", 200, 0.002),
        ("/latest/api/token", 200, 0.0001),
        ("/latest/api/token", 403, 0.0001),
        ("/latest/../../etc/passwd", 404, 0.02),
    ):
        stats.observe(path, status, seconds)
    stats.refused(431)  # a head too large: counted, not timed
    snapshot = tmp_path / "run" / "metadata-metrics.json"
    publisher = Publisher(stats, snapshot)
    publisher.publish()
    assert stat.S_IMODE(snapshot.stat().st_mode) == 0o600
    assert [p.name for p in snapshot.parent.iterdir()] == [snapshot.name]  # no temp left
    found = samples(snapshot)
    count = "vdc_metadata_requests_total"
    assert found[(count, (("path", "token"), ("status", "403")))] == 1
    assert found[(count, (("path", "other"), ("status", "404")))] == 1
    assert found[(count, (("path", "other"), ("status", "431")))] == 1
    bucket = "vdc_metadata_request_duration_seconds_bucket"
    assert found[(bucket, (("le", "0.001"), ("path", "user-data")))] == 0
    assert found[(bucket, (("le", "0.0025"), ("path", "user-data")))] == 1
    assert found[(bucket, (("le", "+Inf"), ("path", "token")))] == 2
    assert found[("vdc_metadata_request_duration_seconds_count", (("path", "other"),))] == 1
    assert found[("vdc_metadata_request_duration_seconds_sum", (("path", "token"),))] == 0.0002


def test_nothing_new_is_not_written_again(tmp_path: Path) -> None:
    stats = RequestStats()
    publisher = Publisher(stats, tmp_path / "m.json")
    assert publisher.due() is not None  # the first: zeros, before any connection
    assert publisher.due() is None
    stats.observe("/", 200, 0.0001)
    assert publisher.due() is not None
    assert publisher.due() is None

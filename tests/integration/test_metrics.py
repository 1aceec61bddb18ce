"""GET /metrics: who may scrape, the text format, and each metric named in the README, on
SQLite and PostgreSQL. The API's counters live in the test process (one registry per
process, as in `vdc serve`'s API process), so those checks compare a scrape with the one
before; the metadata counts come from a real `vdc serve`'s metadata process."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import Session

from app import metrics
from app.ids import new_id
from app.metrics import METADATA_BUCKETS, metadata_path_kind, route_template
from app.models.job import Job, JobState
from app.services import gauges
from metadata.resolver import sign
from tests.conftest import Keys, bearer
from tests.integration.cloud import Cloud, build_cloud
from tests.integration.served import served_world, vdc_serve


@pytest.fixture
def cloud(client: TestClient, keys: Keys, test_host_uri, make_disk: Callable[..., Path]) -> Cloud:  # type: ignore[no-untyped-def]
    return build_cloud(client, keys, test_host_uri(), make_disk)


def scrape(cloud: Cloud) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, parsed with prometheus_client's own parser."""
    response = cloud.client.get("/metrics", headers=bearer(cloud.admin))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    return float(samples.get((name, tuple(sorted(labels.items()))), 0.0))


def test_only_admins_scrape(cloud: Cloud) -> None:
    anonymous = cloud.client.get("/metrics")
    assert anonymous.status_code == 401
    assert anonymous.json()["type"] == "unauthorized"
    user = cloud.client.get("/metrics", headers=bearer(cloud.keys.new("alice")))
    assert user.status_code == 403
    assert "vdc_" not in user.text
    admin = cloud.client.get("/metrics", headers=bearer(cloud.admin))
    assert admin.status_code == 200
    for name in (
        "vdc_http_requests_total",
        "vdc_http_request_duration_seconds",
        "vdc_metadata_requests_total",
        "vdc_metadata_request_duration_seconds",
        "vdc_instance_launch_duration_seconds",
        "vdc_instances",
        "vdc_hosts",
        "vdc_jobs",
        "process_cpu_seconds_total",
    ):
        assert f"# HELP {name} " in admin.text, name
    assert "# TYPE vdc_http_request_duration_seconds histogram" in admin.text


def test_requests_are_counted_by_route_template_never_by_raw_path(cloud: Cloud) -> None:
    before = scrape(cloud)
    admin = bearer(cloud.admin)
    assert cloud.client.get("/api/v1/instances", headers=admin).status_code == 200
    for missing in ("i-nothere1", "i-nothere2", "i-nothere3"):
        assert cloud.client.get(f"/api/v1/instances/{missing}", headers=admin).status_code == 404
    assert cloud.client.get("/no/such/page").status_code == 404
    after = scrape(cloud)
    count = "vdc_http_requests_total"
    listed = {"method": "GET", "route": "/api/v1/instances", "status": "200"}
    one = {"method": "GET", "route": "/api/v1/instances/{instance_id}", "status": "404"}
    assert value(after, count, **listed) == value(before, count, **listed) + 1
    assert value(after, count, **one) == value(before, count, **one) + 3
    nowhere = {"method": "GET", "route": "unmatched", "status": "404"}
    assert value(after, count, **nowhere) == value(before, count, **nowhere) + 1
    timed = {"method": "GET", "route": "/api/v1/instances/{instance_id}"}
    seconds = "vdc_http_request_duration_seconds_count"
    assert value(after, seconds, **timed) == value(before, seconds, **timed) + 3
    assert value(after, "vdc_http_request_duration_seconds_bucket", **timed, le="+Inf") >= 3
    routes = {dict(labels).get("route") for _, labels in after}
    assert not any(r and ("i-nothere" in r or "/no/such" in r) for r in routes)


def test_the_route_template_keeps_router_prefixes() -> None:
    class Route:
        path = "/instances/{instance_id}/console"

    scope = {"route": Route(), "path": "/api/v1/instances/i-12345678/console"}
    assert route_template(scope) == "/api/v1/instances/{instance_id}/console"
    assert route_template({"path": "/whatever"}) == "unmatched"


def test_instances_hosts_and_launch_durations(cloud: Cloud) -> None:
    before = scrape(cloud)
    launched = cloud.launch()
    cloud.wait_for(launched["id"], "running")
    after = scrape(cloud)
    assert value(after, "vdc_instances", state="running") == 1
    assert value(after, "vdc_instances", state="rebooting") == 0  # every state is listed
    assert value(after, "vdc_hosts", status="online") == 1
    assert value(after, "vdc_hosts", status="offline") == 0
    launches = "vdc_instance_launch_duration_seconds_count"
    assert value(after, launches) == value(before, launches) + 1
    total = "vdc_instance_launch_duration_seconds_sum"
    assert 0 < value(after, total) - value(before, total) < 60


def test_jobs_by_kind_and_state(engine: sa.Engine) -> None:
    with Session(engine) as session:
        for state in (JobState.queued, JobState.queued, JobState.failed, JobState.done):
            session.add(Job(id=new_id("job"), kind="volume_create", state=state))
        session.commit()
        found = {r.name: r for r in gauges.readings(session)}["vdc_jobs"].values
    assert found == {
        ("volume_create", "queued"): 2,
        ("volume_create", "running"): 0,
        ("volume_create", "failed"): 1,
    }


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metadata_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {key: v for key, v in parse(text).items() if key[0].startswith("vdc_metadata_")}


def test_metadata_requests_and_latency(
    tmp_path: Path,
    free_tcp_port_factory: Callable[[], int],
    test_host_uri: Callable[..., str],
) -> None:
    """`vdc serve`'s metadata process counts its answers and GET /metrics shows them: a
    running instance asks through a signed proxy (as from its own address), a stranger
    asks, a path that does not exist is asked for, a token is asked for."""
    secret = "proxy-secret-for-metrics"
    with vdc_serve(
        tmp_path,
        free_tcp_port_factory,
        VDC_ALLOW_TEST_HOSTS="true",
        VDC_METADATA_PROXY_SECRET=secret,
    ) as served:
        api, image_id = served_world(served, tmp_path, test_host_uri())
        launched = api.post(
            "/api/v1/instances",
            json={"image_id": image_id, "instance_type": "nano", "user_data": "hi"},
        )
        assert launched.status_code == 202, launched.text
        instance_id = launched.json()["id"]
        deadline = time.monotonic() + 60
        while (shown := api.get(f"/api/v1/instances/{instance_id}").json())["state"] != "running":
            assert shown["state"] in ("pending", "starting"), shown
            assert time.monotonic() < deadline, shown
            time.sleep(0.1)
        # Nothing asked yet: the families are there, without series.
        assert metadata_samples(api.get("/metrics").text) == {}

        metadata = httpx.Client(base_url=f"http://127.0.0.1:{served.metadata_port}", timeout=10)
        proxied = {
            "X-Forwarded-For": shown["ip_address"],
            "X-Instance-ID": instance_id,
            "X-Instance-ID-Signature": sign(secret.encode(), instance_id),
        }
        asked = metadata.get("/latest/meta-data/instance-id", headers=proxied)
        assert (asked.status_code, asked.text) == (200, instance_id)
        assert metadata.get("/latest/user-data", headers=proxied).text == "hi"
        assert metadata.get("/latest/meta-data/no-such-key", headers=proxied).status_code == 404
        # 127.0.0.1 holds no lease and sends no signed header: nobody, 404.
        assert metadata.get("/latest/meta-data/instance-id").status_code == 404
        ttl = {"X-aws-ec2-metadata-token-ttl-seconds": "60"}
        assert metadata.put("/latest/api/token", headers=proxied | ttl).status_code == 200

        count = "vdc_metadata_requests_total"
        seconds = "vdc_metadata_request_duration_seconds"
        wanted = {
            (count, (("path", "meta-data"), ("status", "200"))): 1.0,
            (count, (("path", "meta-data"), ("status", "404"))): 2.0,
            (count, (("path", "user-data"), ("status", "200"))): 1.0,
            (count, (("path", "token"), ("status", "200"))): 1.0,
            **{(f"{seconds}_count", (("path", k),)): n for k, n in answers_by_kind().items()},
        }
        deadline = time.monotonic() + 30  # published within a second; waited for, not slept
        while True:
            found = metadata_samples(api.get("/metrics").text)
            counts = {k: v for k, v in found.items() if k[0] in (count, f"{seconds}_count")}
            if counts == wanted or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert counts == wanted
        for kind, answers in answers_by_kind().items():
            buckets = [
                value(found, f"{seconds}_bucket", path=kind, le=str(bound))
                for bound in METADATA_BUCKETS
            ]
            assert buckets == sorted(buckets), (kind, buckets)  # cumulative
            assert value(found, f"{seconds}_bucket", path=kind, le="+Inf") == answers
            assert 0 < value(found, f"{seconds}_sum", path=kind) < answers  # seconds each
        published = served.files / "run" / "metadata-metrics.json"
        assert published.stat().st_mode & 0o777 == 0o600


def answers_by_kind() -> dict[str, float]:
    return {"meta-data": 3.0, "user-data": 1.0, "token": 1.0}


def test_a_missing_or_broken_snapshot_is_no_series_and_no_error(tmp_path: Path) -> None:
    snapshot = tmp_path / "metadata-metrics.json"
    for written in (None, "", "{not json", '{"buckets": [1, 2]}', '{"buckets": "x"}', "[]"):
        if written is not None:
            snapshot.write_text(written)
        text = metrics.render([], snapshot).decode()
        assert "# TYPE vdc_metadata_requests_total counter" in text
        assert "# TYPE vdc_metadata_request_duration_seconds histogram" in text
        assert metadata_samples(text) == {}, written


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/", "versions"),
        ("/latest", "versions"),
        ("/latest/meta-data/", "meta-data"),
        ("/2009-04-04/meta-data/public-keys/0/openssh-key", "meta-data"),
        ("/latest/user-data", "user-data"),
        ("/latest/dynamic/instance-identity/document", "dynamic"),
        ("/latest/api/token", "token"),
        ("/latest/nonsense/../../etc", "other"),
    ],
)
def test_metadata_path_kinds_are_few(path: str, kind: str) -> None:
    assert metadata_path_kind(path) == kind


def test_the_scrape_names_no_tenant(cloud: Cloud) -> None:
    """Labels say routes, states and kinds: never an account, an instance or an address."""
    alice = cloud.keys.new("alice")
    launched = cloud.launch(alice)
    cloud.client.get(f"/api/v1/instances/{launched['id']}", headers=bearer(alice))
    text = cloud.client.get("/metrics", headers=bearer(cloud.admin)).text
    assert launched["id"] not in text
    assert launched["ip_address"] not in text
    assert not re.search(r"a-[a-z0-9]{8}", text)

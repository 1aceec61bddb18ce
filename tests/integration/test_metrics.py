"""GET /metrics: who may scrape, the text format, and each metric named in the README, on
SQLite and PostgreSQL. Counters live in the test process (one registry per process, as in
`vdc serve`), so the checks compare a scrape with the one before."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import Session

from app.metrics import MetadataMetrics, metadata_path_kind, route_template
from app.models.job import JobState
from app.services import gauges, jobs
from metadata.app import create_metadata_app
from tests.conftest import Keys, bearer
from tests.integration.cloud import Cloud, build_cloud


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
            job = jobs.enqueue(session, "volume_create", None)
            job.state = state
        session.commit()
        found = {r.name: r for r in gauges.readings(session)}["vdc_jobs"].values
    assert found == {
        ("volume_create", "queued"): 2,
        ("volume_create", "running"): 0,
        ("volume_create", "failed"): 1,
    }


def test_metadata_requests_and_latency(cloud: Cloud, engine: sa.Engine) -> None:
    """The metadata listener as `vdc serve` wires it: its app behind MetadataMetrics."""
    app = MetadataMetrics(create_metadata_app(engine, "vdc-1", token_secret="t" * 32))
    launched = cloud.launch(user_data="#!/bin/sh\necho hi\n")
    running = cloud.wait_for(launched["id"], "running")
    guest = TestClient(app, base_url="http://10.10.0.1:8775", client=(running["ip_address"], 4000))
    stranger = TestClient(app, base_url="http://10.10.0.1:8775", client=("10.10.0.250", 4000))
    before = scrape(cloud)
    assert guest.get("/latest/meta-data/instance-id").text == running["id"]
    assert guest.get("/latest/user-data").status_code == 200
    assert stranger.get("/latest/meta-data/instance-id").status_code == 404
    token = guest.put("/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    assert token.status_code == 200
    after = scrape(cloud)
    count = "vdc_metadata_requests_total"
    for labels, more in (
        ({"path": "meta-data", "status": "200"}, 1),
        ({"path": "meta-data", "status": "404"}, 1),
        ({"path": "user-data", "status": "200"}, 1),
        ({"path": "token", "status": "200"}, 1),
    ):
        assert value(after, count, **labels) == value(before, count, **labels) + more, labels
    seconds = "vdc_metadata_request_duration_seconds_count"
    assert value(after, seconds, path="meta-data") == value(before, seconds, path="meta-data") + 2


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

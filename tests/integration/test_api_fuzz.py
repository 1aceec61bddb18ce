"""Every operation of the OpenAPI schema, fuzzed by schemathesis (property-based, from the
schema): with an admin key, a user key and no key, no answer is a 5xx and every answer
conforms to the schema (a documented status code, its content type and body shape).

Runs in-process against the ASGI app over a test:// host, on SQLite (the API suite runs
the same routes on PostgreSQL). The cases are derandomized: a failure repeats.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import Keys
from tests.integration.cloud import Cloud, build_cloud

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = 40
PUBLIC = ("/healthz",)  # answers without a key, by design


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    return sqlite_url


@pytest.fixture
def cloud(client: TestClient, keys: Keys, test_host_uri, make_disk: Callable[..., Path]) -> Cloud:  # type: ignore[no-untyped-def]
    return build_cloud(client, keys, test_host_uri(), make_disk)


def fuzz_every_operation(cloud: Cloud, key: str | None) -> list[str]:
    """Runs every operation's cases; returns what failed, one line per operation."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", cloud.client.app)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    failures = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30  # the whole API, not an empty schema
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case) -> None:  # type: ignore[no-untyped-def]
            response = case.call_and_validate(headers=headers, checks=CHECKS)
            if key is None and operation.path not in PUBLIC:
                assert response.status_code in (401, 404, 405, 422), response.text

        try:
            run()
        except Exception as error:
            failures.append(f"{operation.method.upper()} {operation.path}: {error}"[:2000])
    return failures


def test_with_an_admin_key(cloud: Cloud) -> None:
    failures = fuzz_every_operation(cloud, cloud.admin)
    assert failures == [], "\n\n".join(failures)


def test_with_a_user_key(cloud: Cloud) -> None:
    failures = fuzz_every_operation(cloud, cloud.keys.new("fuzzer"))
    assert failures == [], "\n\n".join(failures)


def test_without_a_key(cloud: Cloud) -> None:
    failures = fuzz_every_operation(cloud, None)
    assert failures == [], "\n\n".join(failures)

"""The docs pages load with no network: every asset they name is served by vdc itself."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from hypervisor.errors import AlreadyExists, HostUnreachable, HypervisorError, NotFoundOnHost

URL = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url\s*:\s*["']([^"']+)["']""")
EXTERNAL = re.compile(r"(?:https?:)?//[A-Za-z0-9.-]+")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_page_names_no_external_host_and_its_assets_are_served(
    client: TestClient, page: str
) -> None:
    response = client.get(page)
    assert response.status_code == 200
    html = response.text
    assert not EXTERNAL.search(html), EXTERNAL.search(html)
    assets = [a or b for a, b in URL.findall(html)]
    assert any(a.endswith(".js") for a in assets)
    for asset in assets:
        assert asset.startswith("/"), asset
        assert client.get(asset).status_code == 200, asset
    # The policy header keeps the page from fetching anything from elsewhere.
    assert "default-src 'self'" in response.headers["content-security-policy"]


def test_openapi_schema_documents_auth_and_errors(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert "HTTPBearer" in schema["components"]["securitySchemes"]
    upload = schema["paths"]["/api/v1/images"]["post"]
    assert "application/octet-stream" in upload["requestBody"]["content"]
    error = upload["responses"]["404"]["content"]["application/json"]["schema"]["$ref"]
    assert error.endswith("/ErrorBody")


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "database": "ok"}


def test_unknown_route_is_json_404(client: TestClient) -> None:
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["type"] == "http_error"


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (HostUnreachable("cannot connect"), 502, "host_unavailable"),
        (NotFoundOnHost("domain i-x not found"), 404, "not_found"),
        (AlreadyExists("network exists"), 409, "conflict"),
        (HypervisorError("internal error"), 502, "host_unavailable"),
    ],
)
def test_a_libvirt_failure_reaching_the_api_is_a_clear_answer(
    client: TestClient, error: HypervisorError, status: int, kind: str
) -> None:
    def fails() -> None:
        raise error

    client.app.add_api_route("/boom", fails)  # type: ignore[attr-defined]
    response = client.get("/boom")
    assert response.status_code == status
    assert response.json()["type"] == kind
    assert str(error) in response.json()["detail"]

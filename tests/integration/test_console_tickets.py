"""Instance screens without a guest (libvirt's test driver), on SQLite and PostgreSQL: every
domain gets a VNC screen on the management side, the API and the web UI hand out
one-time tickets, and the WebSocket refuses everyone but the one a ticket was given to.
The proxying itself (RFB to a screen) is tests/integration/test_console_proxy.py."""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import libvirt
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse

from hypervisor.connection import POOL
from tests.conftest import Keys, bearer
from tests.integration.cloud import Cloud, build_cloud
from tests.integration.web_forms import sign_in


@pytest.fixture
def cloud(client: TestClient, keys: Keys, test_host_uri, make_disk: Callable[..., Path]) -> Cloud:  # type: ignore[no-untyped-def]
    return build_cloud(client, keys, test_host_uri(), make_disk)


def running(cloud: Cloud, key: str) -> str:
    return cloud.wait_for(cloud.launch(key)["id"], "running")["id"]


def api_ticket(cloud: Cloud, instance_id: str, key: str) -> str:
    response = cloud.client.post(
        f"/api/v1/instances/{instance_id}/console/vnc", headers=bearer(key)
    )
    assert response.status_code == 200, response.text
    return parse_qs(urlsplit(response.json()["url"]).query)["ticket"][0]


def web_ticket(client: TestClient, instance_id: str, csrf: str) -> str:
    response = client.post(
        f"/instances/{instance_id}/screen/ticket", headers={"X-CSRF-Token": csrf}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["ticket"])


def refusal(client: TestClient, instance_id: str, ticket: str, **headers: str) -> tuple[int, str]:
    """The HTTP answer to a WebSocket that must not open: (status, detail)."""
    path = f"/instances/{instance_id}/screen/socket?ticket={ticket}"
    with (
        pytest.raises(WebSocketDenialResponse) as refused,
        client.websocket_connect(path, headers=dict(headers)),
    ):
        pass
    return refused.value.status_code, str(refused.value.json()["detail"])


class TestEveryDomainHasAScreen:
    def test_vnc_on_the_management_side_with_its_own_password(self, cloud: Cloud) -> None:
        first, second = running(cloud, cloud.admin), running(cloud, cloud.admin)
        passwords = []
        for instance_id in (first, second):
            domain = POOL.get(cloud.host_uri).lookupByName(instance_id)
            root = ET.fromstring(domain.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE))
            (graphics,) = root.findall("devices/graphics")
            assert graphics.get("type") == "vnc" and graphics.get("autoport") == "yes"
            # vdc's own host: loopback only, never an address of a guest network.
            assert [e.get("address") for e in graphics.findall("listen")] == ["127.0.0.1"]
            assert re.fullmatch(r"[A-Za-z0-9]{8}", graphics.get("passwd", ""))
            assert root.find("devices/video/model").get("type") == "vga"  # type: ignore[union-attr]
            passwords.append(graphics.get("passwd"))
        assert passwords[0] != passwords[1]


class TestConsoleApi:
    def test_a_one_time_url_for_a_running_instance(self, cloud: Cloud, engine: sa.Engine) -> None:
        alice = cloud.keys.new("alice")
        instance_id = running(cloud, alice)
        before = datetime.now(UTC)
        response = cloud.client.post(
            f"/api/v1/instances/{instance_id}/console/vnc", headers=bearer(alice)
        )
        assert response.status_code == 200, response.text
        answer = response.json()
        url = urlsplit(answer["url"])
        assert (url.scheme, url.netloc, url.path) == (
            "ws",
            "testserver",
            f"/instances/{instance_id}/screen/socket",
        )
        assert (answer["instance_id"], answer["protocol"]) == (instance_id, "vnc")
        expires = datetime.fromisoformat(answer["expires_at"])
        assert before + timedelta(seconds=50) < expires < before + timedelta(seconds=70)
        ticket = parse_qs(url.query)["ticket"][0]
        with engine.connect() as db:  # the database keeps only the ticket's hash
            stored = db.execute(sa.text("SELECT id FROM console_tickets")).scalars().all()
        assert stored == [hashlib.sha256(ticket.encode()).hexdigest()]

    def test_refused_unless_running_and_yours(self, cloud: Cloud) -> None:
        alice, bob = cloud.keys.new("alice"), cloud.keys.new("bob")
        instance_id = running(cloud, alice)
        path = f"/api/v1/instances/{instance_id}/console/vnc"
        assert cloud.client.post(path).status_code == 401
        other = cloud.client.post(path, headers=bearer(bob))
        assert other.status_code == 404
        assert other.json()["detail"] == f"instance {instance_id} not found"
        assert cloud.action(instance_id, "stop", alice).status_code == 202
        cloud.wait_for(instance_id, "stopped", key=alice)
        stopped = cloud.client.post(path, headers=bearer(alice))
        assert stopped.status_code == 409
        assert stopped.json()["detail"] == (
            f"instance {instance_id} is stopped: its screen exists only while it runs"
        )

    def test_documented_in_openapi(self, client: TestClient) -> None:
        operation = client.get("/openapi.json").json()["paths"][
            "/api/v1/instances/{instance_id}/console/vnc"
        ]["post"]
        assert "one-time WebSocket URL" in operation["description"]
        assert "409" in operation["responses"]


class TestTheSocketRefuses:
    def test_without_a_session_or_with_another_accounts(self, cloud: Cloud) -> None:
        client = cloud.client
        alice, bob = cloud.keys.new("alice"), cloud.keys.new("bob")
        instance_id = running(cloud, alice)
        ticket = web_ticket(client, instance_id, sign_in(client, alice))
        alice_cookie = client.cookies["vdc_session"]

        client.cookies.clear()
        assert refusal(client, instance_id, ticket) == (
            401,
            "not signed in: this console ticket needs the web UI session",
        )
        sign_in(client, bob)  # bob's own session, with alice's ticket
        assert refusal(client, instance_id, ticket) == (
            403,
            "this console ticket was given to another web UI session",
        )
        # None of these used the ticket up: alice's own browser still may, from its pages.
        client.cookies.clear()
        client.cookies.set("vdc_session", alice_cookie)
        assert refusal(client, instance_id, ticket, origin="https://evil.example")[0] == 403
        assert refusal(client, "i-00000000", ticket)[0] == 403  # not this instance's ticket

    def test_a_used_or_expired_ticket(self, cloud: Cloud, engine: sa.Engine) -> None:
        client = cloud.client
        alice = cloud.keys.new("alice")
        instance_id = running(cloud, alice)
        used = api_ticket(cloud, instance_id, alice)
        with client.websocket_connect(f"/instances/{instance_id}/screen/socket?ticket={used}"):
            pass  # accepted (the test driver's guest has no screen to show; see the proxy test)
        assert refusal(client, instance_id, used) == (
            403,
            "this console ticket was used already: each opens one connection",
        )
        expired = api_ticket(cloud, instance_id, alice)
        with engine.begin() as db:
            db.execute(
                sa.text("UPDATE console_tickets SET expires_at = :then WHERE id = :id"),
                {
                    "then": datetime.now(UTC) - timedelta(seconds=1),
                    "id": hashlib.sha256(expired.encode()).hexdigest(),
                },
            )
        assert refusal(client, instance_id, expired) == (
            403,
            "this console ticket expired (it lasts 60 s)",
        )
        assert refusal(client, instance_id, "made-up")[0] == 403
        assert refusal(client, instance_id, "")[0] == 403

    def test_a_revoked_key_or_a_stopped_instance(self, cloud: Cloud) -> None:
        alice = cloud.keys.new("alice")
        instance_id = running(cloud, alice)
        spare = cloud.client.post(
            "/api/v1/api_keys", json={"name": "spare"}, headers=bearer(alice)
        ).json()
        ticket = api_ticket(cloud, instance_id, spare["api_key"])
        revoke = cloud.client.delete(f"/api/v1/api_keys/{spare['id']}", headers=bearer(alice))
        assert revoke.status_code == 204, revoke.text
        assert refusal(cloud.client, instance_id, ticket) == (401, "this API key was revoked")

        ticket = api_ticket(cloud, instance_id, alice)
        cloud.action(instance_id, "stop", alice)
        cloud.wait_for(instance_id, "stopped", key=alice)
        assert refusal(cloud.client, instance_id, ticket)[0] == 409


class TestScreenPage:
    def test_the_page_and_its_tickets(self, cloud: Cloud) -> None:
        client = cloud.client
        alice, bob = cloud.keys.new("alice"), cloud.keys.new("bob")
        instance_id = running(cloud, alice)
        csrf = sign_in(client, alice)
        page = client.get(f"/instances/{instance_id}/screen")
        assert page.status_code == 200
        assert '<script type="module" src="/static/ui/screen.js"></script>' in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert "<script>" not in page.text  # no inline script
        detail = client.get(f"/instances/{instance_id}")
        assert f'href="/instances/{instance_id}/screen"' in detail.text
        for module in ("/static/ui/screen.js", "/static/vendor/novnc/core/rfb.js"):
            served = client.get(module)
            assert served.status_code == 200
            assert "javascript" in served.headers["content-type"]

        ticket = f"/instances/{instance_id}/screen/ticket"
        assert client.post(ticket).status_code == 403  # no CSRF token
        assert client.post(ticket, headers={"X-CSRF-Token": csrf}).status_code == 200
        cloud.action(instance_id, "stop", alice)
        cloud.wait_for(instance_id, "stopped", key=alice)
        stopped = client.post(ticket, headers={"X-CSRF-Token": csrf})
        assert stopped.status_code == 409
        assert "stopped" in stopped.json()["detail"]

        client.cookies.clear()
        bob_csrf = sign_in(client, bob)
        assert client.get(f"/instances/{instance_id}/screen").status_code == 404
        assert client.post(ticket, headers={"X-CSRF-Token": bob_csrf}).status_code == 404

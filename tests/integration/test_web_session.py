"""The web UI's session and its guards, without a browser: the signed cookie, CSRF,
redirects, and errors as pages (tests/ui/ drives the pages in Chromium)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from app.config import Settings
from app.db import session_scope
from app.main import create_app
from app.services.identity import accounts
from tests.conftest import Keys, bearer
from tests.integration.web_forms import login_form, sign_in


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    return sqlite_url


def test_pages_need_a_session_and_keep_where_you_were_going(client: TestClient) -> None:
    for path in ("/", "/instances", "/images", "/volumes", "/security_groups", "/keypairs"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"].startswith(("/login", "/instances"))
    assert client.get("/volumes", follow_redirects=False).headers["location"] == (
        "/login?next=/volumes"
    )


def test_the_cookie_is_signed_httponly_and_holds_no_key(client: TestClient, keys: Keys) -> None:
    key = keys.new("alice")
    response = client.post("/login", data=login_form(client, key), follow_redirects=False)
    header = response.headers["set-cookie"]
    assert "HttpOnly" in header and "SameSite=lax" in header and key not in header
    assert client.get("/instances").status_code == 200
    value = client.cookies["vdc_session"]
    body, mac = value.rsplit(".", 1)
    client.cookies.set("vdc_session", f"{body}.{'0' * len(mac)}")
    assert client.get("/instances", follow_redirects=False).status_code == 303


def test_a_revoked_key_or_deleted_account_ends_the_session(
    client: TestClient, keys: Keys, engine: sa.Engine
) -> None:
    key = keys.new("alice")
    sign_in(client, key)
    assert client.get("/instances").status_code == 200
    with session_scope(engine) as session:
        accounts.delete_account(session, keys.ids["alice"])
    assert client.get("/instances", follow_redirects=False).status_code == 303


def test_forms_need_the_sessions_csrf_token(client: TestClient, keys: Keys) -> None:
    csrf = sign_in(client, keys.new("alice"))
    for token in ("", "forged"):
        refused = client.post("/security_groups", data={"csrf": token, "name": "web"})
        assert refused.status_code == 403
        assert "text/html" in refused.headers["content-type"]
        assert "came from elsewhere" in refused.text
    made = client.post(
        "/security_groups", data={"csrf": csrf, "name": "web"}, follow_redirects=False
    )
    assert made.status_code == 303 and made.headers["location"].startswith("/security_groups/sg-")
    upload = client.post("/images/upload?arch=x86_64", content=b"x")  # no X-CSRF-Token
    assert upload.status_code == 403
    logout = client.post("/logout", data={"csrf": "forged"})
    assert logout.status_code == 403


def test_no_redirect_to_another_site_after_sign_in(client: TestClient, keys: Keys) -> None:
    key = keys.new("alice")
    for target in ("//evil.example/", "https://evil.example/", "javascript:alert(1)"):
        response = client.post(
            "/login", data=login_form(client, key, next=target), follow_redirects=False
        )
        assert response.headers["location"] == "/instances"


def test_errors_are_pages_and_pages_forbid_foreign_scripts(client: TestClient, keys: Keys) -> None:
    sign_in(client, keys.new("alice"))
    missing = client.get("/instances/i-nothere1")
    assert missing.status_code == 404
    assert "text/html" in missing.headers["content-type"]
    assert "instance i-nothere1 not found" in missing.text
    assert "script-src 'self'" in missing.headers["content-security-policy"]
    admin_only = client.get("/hosts")
    assert admin_only.status_code == 403 and "this page is for admins" in admin_only.text


def test_signing_out_ends_the_session_on_the_server(client: TestClient, keys: Keys) -> None:
    """A copy of the cookie (another tab, a stolen one) stops working at sign-out."""
    key = keys.new("alice")
    csrf = sign_in(client, key)
    copied = client.cookies["vdc_session"]
    out = client.post("/logout", data={"csrf": csrf}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    client.cookies.set("vdc_session", copied)
    assert client.get("/instances", follow_redirects=False).status_code == 303
    # Signing out is per browser: another one signed in with the same key stays in.
    stays, leaves = TestClient(client.app), TestClient(client.app)
    sign_in(stays, key)
    leaves.post("/logout", data={"csrf": sign_in(leaves, key)})
    assert leaves.get("/instances", follow_redirects=False).status_code == 303
    assert stays.get("/instances", follow_redirects=False).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://testserver.evil.example"},
        {"Referer": "https://evil.example/login-forgery.html"},
    ],
    ids=["foreign-origin", "null-origin", "lookalike-origin", "foreign-referer"],
)
def test_a_sign_in_posted_from_another_site_is_refused(
    client: TestClient, keys: Keys, headers: dict[str, str]
) -> None:
    """Login forgery: another site must not sign a visitor in to the attacker's account."""
    form = login_form(client, keys.new("mallory"))
    refused = client.post("/login", data=form, headers=headers, follow_redirects=False)
    assert refused.status_code == 403, refused.text
    assert "text/html" in refused.headers["content-type"]
    assert "another site" in refused.text
    assert "vdc_session" not in client.cookies
    same = {"Origin": "http://testserver", "Referer": "http://testserver/login"}
    for name, value in same.items():
        accepted = client.post("/login", data=form, headers={name: value}, follow_redirects=False)
        assert accepted.status_code == 303, (name, accepted.text)


def test_a_sign_in_needs_the_forms_own_token(client: TestClient, keys: Keys) -> None:
    """Without Origin or Referer (some browsers' privacy settings), the pre-session token
    in a cookie and the form's hidden field is what proves the form came from here."""
    key = keys.new("alice")
    form = login_form(client, key)
    for forged in ({**form, "login_csrf": "guessed"}, {"api_key": key}):
        refused = client.post("/login", data=forged, follow_redirects=False)
        assert refused.status_code == 403, refused.text
    fresh = TestClient(client.app)  # the form's token, but not the browser that got it
    assert fresh.post("/login", data=form, follow_redirects=False).status_code == 403
    assert client.post("/login", data=form, follow_redirects=False).status_code == 303


def test_api_keys_page_issues_a_key_once_and_revokes_with_a_confirmed_form(
    client: TestClient, keys: Keys
) -> None:
    first = keys.new("alice")
    bob = keys.new("bob")
    csrf = sign_in(client, first)
    page = client.get("/api_keys")
    assert page.status_code == 200 and first[:10] in page.text and first not in page.text
    assert bob[:10] not in page.text
    issued = client.post("/api_keys", data={"csrf": csrf, "name": "laptop"})
    assert issued.status_code == 200 and issued.headers["cache-control"] == "no-store"
    second = re.search(r"vdc_[A-Za-z0-9_-]{40,}", issued.text).group(0)  # type: ignore[union-attr]
    page = client.get("/api_keys").text
    assert "laptop" in page and second not in page  # shown once
    assert 'data-confirm="Revoke' in page
    listed = client.get("/api/v1/api_keys", headers=bearer(second)).json()["items"]
    laptop = next(k["id"] for k in listed if k["name"] == "laptop")
    signed_in_with = next(k["id"] for k in listed if k["name"] != "laptop")
    forged = client.post(f"/api_keys/{laptop}/revoke", data={"csrf": "forged"})
    assert forged.status_code == 403
    revoked = client.post(f"/api_keys/{laptop}/revoke", data={"csrf": csrf}, follow_redirects=False)
    assert revoked.status_code == 303 and "revoked" in revoked.headers["location"]
    assert client.get("/api/v1/accounts/me", headers=bearer(second)).status_code == 401
    assert client.get("/api_keys").status_code == 200  # this browser's key still works
    # Revoking the key this browser signed in with signs it out.
    out = client.post(
        f"/api_keys/{signed_in_with}/revoke", data={"csrf": csrf}, follow_redirects=False
    )
    assert out.status_code == 303 and out.headers["location"].startswith("/login")
    assert client.get("/api_keys", follow_redirects=False).status_code == 303


def test_servers_sharing_vdc_web_secret_accept_each_others_sessions(
    settings: Settings, tmp_path: Path, keys: Keys
) -> None:
    """README: VDC_WEB_SECRET is shared between replicas (one database, data dirs of their
    own): a session signed in on one is valid on the other, and signing out on either ends
    it on both. A server with another secret does not take the cookie."""

    def server(name: str, secret: str) -> TestClient:
        replica = settings.model_copy(
            update={"data_dir": tmp_path / name, "web_secret": secret, "workers": 0}
        )
        return TestClient(create_app(replica))

    shared = "a-secret-both-replicas-share-0123456789abcdef"
    key = keys.new("alice")
    with (
        server("one", shared) as one,
        server("two", shared) as two,
        server("other", "another-secret-0123456789abcdef") as other,
    ):
        csrf = sign_in(one, key)
        cookie = one.cookies["vdc_session"]
        two.cookies.set("vdc_session", cookie)
        page = two.get("/instances", follow_redirects=False)
        assert page.status_code == 200
        assert "alice" in page.text
        # The session's CSRF token, from a page of the first, passes a form on the second.
        made = two.post(
            "/security_groups", data={"csrf": csrf, "name": "web"}, follow_redirects=False
        )
        assert made.status_code == 303, made.text
        listed = one.get("/security_groups")
        assert "web" in listed.text

        other.cookies.set("vdc_session", cookie)
        assert other.get("/instances", follow_redirects=False).status_code == 303

        signed_out = two.post("/logout", data={"csrf": csrf}, follow_redirects=False)
        assert signed_out.status_code == 303
        one.cookies.set("vdc_session", cookie)  # the copy the first server still holds
        assert one.get("/instances", follow_redirects=False).status_code == 303

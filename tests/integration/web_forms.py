"""Signing in to the web UI the way a browser does, for tests that drive its forms."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient


def login_form(client: TestClient, key: str, **fields: str) -> dict[str, str]:
    """The sign-in form as the browser posts it: with the pre-session token the form page
    hands out (in a cookie and a hidden field)."""
    page = client.get("/login")
    token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
    return {"api_key": key, **({"login_csrf": token.group(1)} if token else {}), **fields}


def sign_in(client: TestClient, key: str) -> str:
    """Signs in; returns the page's CSRF token for the signed-in session's forms."""
    response = client.post("/login", data=login_form(client, key), follow_redirects=False)
    assert response.status_code == 303, response.text
    page = client.get("/instances/new")
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]

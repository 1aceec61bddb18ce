"""image prepare looks for vdc-init's HTTP clients the way the script chooses them: the two
lists must not drift apart."""

from __future__ import annotations

import re

from app.guest import vdc_init_script
from app.services.images.image_checks import HTTP_CHOICES, HTTP_NAMES


def test_prepare_looks_for_http_clients_in_the_scripts_own_order() -> None:
    script = vdc_init_script()
    body = script[
        script.index("choose_http() {") : script.index("\n}\n", script.index("choose_http() {"))
    ]
    in_script = re.findall(r"HTTP=([a-z0-9-]+)", body)
    assert in_script == [choice for choice, _ in HTTP_CHOICES]
    assert set(HTTP_NAMES) == set(in_script)

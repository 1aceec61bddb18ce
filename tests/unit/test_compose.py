"""docker-compose.yml is configured by the same VDC_ variables the server reads."""

from __future__ import annotations

from pathlib import Path

import yaml

from app.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_compose_uses_only_real_settings_and_runs_migrated_server() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    server = compose["services"]["vdc"]
    known = {f"VDC_{name.upper()}" for name in Settings.model_fields}
    assert set(server["environment"]) <= known
    assert server["environment"]["VDC_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert server["command"] == ["vdc", "serve", "--migrate"]
    mounts = {volume.split(":")[0] for volume in server["volumes"]}
    assert {"/var/run/libvirt", "/var/lib/vdc"} <= mounts
    assert compose["services"]["postgres"]["image"].startswith("postgres:")

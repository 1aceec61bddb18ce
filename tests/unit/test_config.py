from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config import Settings, split_bind
from app.ids import new_id


def test_defaults_put_sqlite_and_imports_under_the_data_dir(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VDC_DATA_DIR", "/srv/vdc")
    monkeypatch.delenv("VDC_DATABASE_URL", raising=False)
    monkeypatch.delenv("VDC_IMPORT_DIRS", raising=False)
    settings = Settings()
    assert settings.effective_database_url == "sqlite:////srv/vdc/vdc.sqlite3"
    assert settings.allowed_import_dirs == [Path("/srv/vdc/import")]
    assert settings.admin_key_file == Path("/srv/vdc/admin.key")


def test_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VDC_DATABASE_URL", "postgresql+psycopg://u:p@db/vdc")
    monkeypatch.setenv("VDC_IMPORT_DIRS", "/a, /b")
    monkeypatch.setenv("VDC_VIRT_TYPE", "qemu")
    settings = Settings()
    assert settings.effective_database_url == "postgresql+psycopg://u:p@db/vdc"
    assert settings.allowed_import_dirs == [Path("/a"), Path("/b")]
    assert settings.virt_type == "qemu"


@pytest.mark.parametrize(
    ("name", "value"),
    [("VDC_VIRT_TYPE", "xen"), ("VDC_API_BIND", "8000"), ("VDC_API_BIND", "h:99999")],
)
def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_split_bind() -> None:
    assert split_bind("127.0.0.1:8000") == ("127.0.0.1", 8000)
    assert split_bind("[::1]:80") == ("::1", 80)


def test_ids_are_wakame_style() -> None:
    ids = {new_id("image") for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"wmi-[a-z0-9]{8}", i) for i in ids)


def test_the_readme_configuration_table_lists_every_setting_with_its_default() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    rows = dict(re.findall(r"^\| `(VDC_[A-Z_]+)` \| ([^|]+) \|", readme, re.M))
    assert set(rows) == {f"VDC_{name.upper()}" for name in Settings.model_fields}
    for name, field in Settings.model_fields.items():
        default = field.default
        if isinstance(default, int | float) and not isinstance(default, bool):
            shown = rows[f"VDC_{name.upper()}"]
            number = str(int(default)) if default == int(default) else str(default)
            assert re.search(rf"`{number}(\.0)?`", shown), (name, default, shown)

"""Alembic's schema is exactly the models' schema, on both engines."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

import app.models  # noqa: F401 - registers the tables
from app.migrations import head_revision, is_current


def test_migrated_schema_matches_the_models(database_url: str) -> None:
    assert is_current(database_url)
    engine = sa.create_engine(database_url)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    engine.dispose()
    assert differences == []
    assert head_revision(database_url) == "0013"


def test_seeds(database_url: str) -> None:
    engine = sa.create_engine(database_url)
    with engine.connect() as connection:
        shared = connection.execute(
            sa.text("SELECT name, is_system FROM accounts WHERE id = 'a-shpoolxx'")
        ).one()
        types = (
            connection.execute(sa.text("SELECT name FROM instance_types ORDER BY memory_size"))
            .scalars()
            .all()
        )
    engine.dispose()
    assert tuple(shared) == ("shpool", True)
    assert types == ["nano", "small", "medium", "large", "xlarge"]


def test_0004_gives_existing_instances_their_root_disk_as_a_volume(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from app.migrations import upgrade

    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    upgrade(url, "0003")
    engine = sa.create_engine(url)
    now = "2026-11-01 10:00:00+00:00"
    with engine.begin() as connection:
        run = connection.execute
        run(
            sa.text(
                "INSERT INTO images (id, account_id, display_name, description, arch, format,"
                " source, file_name, file_size, virtual_size, sha256, is_public, state,"
                " created_at, updated_at) VALUES ('wmi-old', 'a-shpoolxx', '', '', 'x86_64',"
                " 'qcow2', 'local', 'wmi-old.qcow2', 1, 2147483648, '', 1, 'available', :t, :t)"
            ),
            {"t": now},
        )
        for instance_id, state in (("i-live", "running"), ("i-gone", "terminated")):
            run(
                sa.text(
                    "INSERT INTO instances (id, account_id, display_name, hostname, image_id,"
                    " cpu_cores, memory_size, root_disk_size, state, state_reason, http_tokens,"
                    " created_at, updated_at) VALUES (:i, 'a-shpoolxx', '', 'h', 'wmi-old', 1,"
                    " 128, 5, :s, '', 'optional', :t, :t)"
                ),
                {"i": instance_id, "s": state, "t": now},
            )
    upgrade(url)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT instance_id, device, boot, state, size FROM volumes")
        ).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [("i-live", "vda", 1, "attached", 5 * 1024**3)]


def test_0006_keeps_existing_keys_working(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from app.db import make_engine, session_scope
    from app.migrations import upgrade
    from app.services.identity import accounts, api_keys

    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    upgrade(url, "0005")
    key = "vdc_" + "k" * 43
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO accounts (id, name, description, is_admin, is_system, created_at)"
                " VALUES ('a-old00000', 'old', '', 1, 0, '2026-11-01 10:00:00+00:00')"
            )
        )
        connection.execute(
            sa.text(
                "INSERT INTO api_keys (id, account_id, key_hash, prefix, created_at) VALUES"
                " ('key-old00000', 'a-old00000', :h, :p, '2026-11-01 10:00:00+00:00')"
            ),
            {"h": api_keys.hash_key(key), "p": key[:10]},
        )
    engine.dispose()
    upgrade(url)
    engine = make_engine(url)
    with session_scope(engine) as session:
        row, account = api_keys.authenticate(session, key)
        assert (row.name, row.revoked_at, account.disabled) == ("", None, False)
        assert "a-old00000" in [a.id for a in accounts.list_accounts(session)]
    engine.dispose()


def test_0012_keeps_every_row_and_frees_the_images_of_terminated_instances(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """SQLite makes `images` and `instances` anew here, with other tables' rows referring
    to them: every row stays, every reference holds, and an image that only a terminated
    instance names can be deleted."""
    from app.migrations import upgrade

    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    upgrade(url, "0008")
    engine = sa.create_engine(url)
    now = "2026-12-01 10:00:00+00:00"
    with engine.begin() as connection:
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        run = connection.execute
        run(
            sa.text(
                "INSERT INTO images (id, account_id, display_name, description, arch, format,"
                " source, file_name, file_size, virtual_size, sha256, is_public, state,"
                " created_at, updated_at) VALUES ('wmi-old', 'a-shpoolxx', '', '', 'x86_64',"
                " 'qcow2', 'local', 'wmi-old.qcow2', 1, 1024, '', 1, 'available', :t, :t)"
            ),
            {"t": now},
        )
        run(
            sa.text(
                "INSERT INTO instances (id, account_id, display_name, hostname, image_id,"
                " cpu_cores, memory_size, root_disk_size, state, state_reason, http_tokens,"
                " created_at, updated_at) VALUES ('i-old', 'a-shpoolxx', '', 'h', 'wmi-old', 1,"
                " 128, 0, 'terminated', '', 'optional', :t, :t)"
            ),
            {"t": now},
        )
        run(
            sa.text(
                "INSERT INTO volumes (id, account_id, display_name, size, image_id, state,"
                " state_reason, instance_id, device, boot, delete_on_termination, created_at,"
                " updated_at) VALUES ('vol-old', 'a-shpoolxx', '', 1024, 'wmi-old', 'deleted',"
                " '', 'i-old', 'vda', 1, 1, :t, :t)"
            ),
            {"t": now},
        )
    engine.dispose()
    upgrade(url)
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        image = connection.execute(sa.text("SELECT kind, progress, state FROM images")).one()
        assert tuple(image) == ("disk", 100, "available")
        volume = connection.execute(sa.text("SELECT instance_id FROM volumes")).one()
        assert tuple(volume) == ("i-old",)
        assert connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
        connection.execute(sa.text("DELETE FROM images WHERE id = 'wmi-old'"))
    engine.dispose()

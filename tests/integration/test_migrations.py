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
    assert head_revision(database_url) == "0015"


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


def test_0014_numbers_every_existing_lease(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Leases made before 0014 get their address's number, and the next launch's address
    (after the highest) is read from it."""
    from sqlmodel import Session

    from app.migrations import upgrade
    from app.models import Network
    from app.services.network import addresses

    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    upgrade(url, "0013")
    engine = sa.create_engine(url)
    now = "2026-12-01 10:00:00+00:00"
    with engine.begin() as connection:
        run = connection.execute
        run(
            sa.text(
                "INSERT INTO networks (id, name, cidr, gateway, dhcp_start, dhcp_end,"
                " dns_servers, domain, is_default, bridge, vni, created_at) VALUES ('nw-old',"
                " 'old', '10.9.0.0/16', '10.9.0.1', '10.9.0.2', '10.9.255.254', '', '', 0,"
                " 'vdcbr-old', 90, :t)"
            ),
            {"t": now},
        )
        _old_instances(connection, {f"i-{n}": "running" for n in range(3)})
        for n, address in enumerate(("10.9.0.2", "10.9.0.3", "10.9.1.7")):
            connection.execute(
                sa.text(
                    "INSERT INTO network_interfaces (id, instance_id, network_id, device_index,"
                    " mac_address, ip_address, created_at)"
                    " VALUES (:id, :i, 'nw-old', 0, :mac, :ip, :t)"
                ),
                {"id": f"vif-{n}", "i": f"i-{n}", "mac": f"52:54:00:00:00:0{n}", "ip": address,
                 "t": now},
            )  # fmt: skip
    engine.dispose()
    upgrade(url)
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT ip_address, ip_number FROM network_interfaces"))
        numbers = {address: number for address, number in rows}
    assert numbers == {"10.9.0.2": 0x0A090002, "10.9.0.3": 0x0A090003, "10.9.1.7": 0x0A090107}
    network = Network(
        id="nw-old", name="old", cidr="10.9.0.0/16", dhcp_start="10.9.0.2", dhcp_end="10.9.255.254"
    )
    with Session(engine) as session:
        assert addresses.free_addresses(session, network, 2) == ["10.9.1.8", "10.9.1.9"]
    engine.dispose()


def test_0015_marks_the_memberships_of_gone_instances(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Memberships made before 0015 count as live unless their instance is shutting down or
    terminated."""
    from app.migrations import upgrade

    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    upgrade(url, "0014")
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        run = connection.execute
        group = run(sa.text("SELECT id FROM security_groups LIMIT 1")).scalar_one()
        states = ("running", "stopped", "shuttingdown", "terminated", "error")
        _old_instances(connection, {f"i-{state}": state for state in states})
        for state in states:
            run(
                sa.text(
                    "INSERT INTO instance_security_groups (instance_id, group_id) VALUES (:i, :g)"
                ),
                {"i": f"i-{state}", "g": group},
            )
    engine.dispose()
    upgrade(url)
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT instance_id, live FROM instance_security_groups"))
        live = {instance_id: bool(mark) for instance_id, mark in rows}
    assert live == {
        "i-running": True,
        "i-stopped": True,
        "i-shuttingdown": False,
        "i-terminated": False,
        "i-error": True,
    }
    engine.dispose()


def _old_instances(connection: sa.Connection, states: dict[str, str]) -> None:
    """An image and instances of it (id -> state) in a database at 0013 or 0014."""
    now = "2026-12-01 10:00:00+00:00"
    connection.execute(
        sa.text(
            "INSERT INTO images (id, account_id, display_name, description, arch, format,"
            " source, file_name, file_size, virtual_size, sha256, is_public, state,"
            " state_reason, kind, progress, created_at, updated_at) VALUES ('wmi-old',"
            " 'a-shpoolxx', '', '', 'x86_64', 'qcow2', 'local', 'wmi-old.qcow2', 1, 1024,"
            " '', 1, 'available', '', 'disk', 100, :t, :t)"
        ),
        {"t": now},
    )
    for instance_id, state in states.items():
        connection.execute(
            sa.text(
                "INSERT INTO instances (id, account_id, display_name, hostname, image_id,"
                " cpu_cores, memory_size, root_disk_size, state, state_reason, http_tokens,"
                " metadata_drive, created_at, updated_at) VALUES (:i, 'a-shpoolxx', '', 'h',"
                " 'wmi-old', 1, 128, 0, :s, '', 'optional', 0, :t, :t)"
            ),
            {"i": instance_id, "s": state, "t": now},
        )

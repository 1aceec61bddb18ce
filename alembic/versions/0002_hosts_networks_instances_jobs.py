"""Host nodes, networks, instance types, instances with their interfaces, and jobs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "host_nodes",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("uri", sa.String(255), nullable=False, unique=True),
        sa.Column("cpu_cores", sa.Integer(), nullable=False),
        sa.Column("memory_size", sa.Integer(), nullable=False),
        sa.Column("arch", sa.String(16), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.String(1024), nullable=False),
        _timestamp("last_seen_at", nullable=True),
        _timestamp("created_at"),
    )
    op.create_table(
        "networks",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("cidr", sa.String(43), nullable=False),
        sa.Column("gateway", sa.String(39), nullable=False),
        sa.Column("dhcp_start", sa.String(39), nullable=False),
        sa.Column("dhcp_end", sa.String(39), nullable=False),
        sa.Column("dns_servers", sa.String(255), nullable=False),
        sa.Column("domain", sa.String(253), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("account_id", sa.String(32), sa.ForeignKey("accounts.id"), nullable=True),
        sa.Column("bridge", sa.String(15), nullable=False, unique=True),
        _timestamp("created_at"),
    )
    instance_types = op.create_table(
        "instance_types",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("cpu_cores", sa.Integer(), nullable=False),
        sa.Column("memory_size", sa.Integer(), nullable=False),
        sa.Column("root_disk_size", sa.Integer(), nullable=False),
        sa.Column("description", sa.String(255), nullable=False),
        _timestamp("created_at"),
    )
    op.create_table(
        "instances",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "account_id", sa.String(32), sa.ForeignKey("accounts.id"), nullable=False, index=True
        ),
        sa.Column("display_name", sa.String(255), nullable=False),
        sa.Column("hostname", sa.String(63), nullable=False),
        sa.Column(
            "image_id", sa.String(32), sa.ForeignKey("images.id"), nullable=False, index=True
        ),
        sa.Column("instance_type", sa.String(32), nullable=True),
        sa.Column("cpu_cores", sa.Integer(), nullable=False),
        sa.Column("memory_size", sa.Integer(), nullable=False),
        sa.Column("root_disk_size", sa.Integer(), nullable=False),
        sa.Column(
            "host_node_id", sa.String(32), sa.ForeignKey("host_nodes.id"), nullable=True, index=True
        ),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("state_reason", sa.String(2048), nullable=False),
        sa.Column("user_data", sa.LargeBinary(), nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        _timestamp("launched_at", nullable=True),
        _timestamp("terminated_at", nullable=True),
    )
    op.create_table(
        "network_interfaces",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "instance_id", sa.String(32), sa.ForeignKey("instances.id"), nullable=False, index=True
        ),
        sa.Column(
            "network_id", sa.String(32), sa.ForeignKey("networks.id"), nullable=False, index=True
        ),
        sa.Column("device_index", sa.Integer(), nullable=False),
        sa.Column("mac_address", sa.String(17), nullable=False, unique=True),
        sa.Column("ip_address", sa.String(39), nullable=False),
        _timestamp("created_at"),
        sa.UniqueConstraint("network_id", "ip_address", name="uq_lease_per_network"),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("instance_id", sa.String(32), nullable=True, index=True),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        _timestamp("lease_expires_at", nullable=True),
        _timestamp("run_after"),
        sa.Column("last_error", sa.String(2048), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
    )
    now = datetime.now(UTC)
    op.bulk_insert(
        instance_types,
        [
            {
                "name": name,
                "cpu_cores": cpu,
                "memory_size": mem,
                "root_disk_size": disk,
                "description": text,
                "created_at": now,
            }
            for name, cpu, mem, disk, text in [
                ("nano", 1, 128, 0, "1 core, 128 MiB, the image's disk size"),
                ("small", 1, 512, 10, "1 core, 512 MiB, 10 GiB"),
                ("medium", 2, 2048, 20, "2 cores, 2 GiB, 20 GiB"),
                ("large", 4, 4096, 40, "4 cores, 4 GiB, 40 GiB"),
                ("xlarge", 8, 8192, 80, "8 cores, 8 GiB, 80 GiB"),
            ]
        ],
    )


def downgrade() -> None:
    for table in (
        "jobs",
        "network_interfaces",
        "instances",
        "instance_types",
        "networks",
        "host_nodes",
    ):
        op.drop_table(table)

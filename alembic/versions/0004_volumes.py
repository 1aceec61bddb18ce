"""Volumes, and jobs that name a volume; existing instances get their root disk as a volume.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

import secrets
import string
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ALPHABET = string.ascii_lowercase + string.digits


def upgrade() -> None:
    volumes = op.create_table(
        "volumes",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "account_id", sa.String(32), sa.ForeignKey("accounts.id"), nullable=False, index=True
        ),
        sa.Column("display_name", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("image_id", sa.String(32), nullable=True),
        sa.Column(
            "host_node_id", sa.String(32), sa.ForeignKey("host_nodes.id"), nullable=True, index=True
        ),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("state_reason", sa.String(2048), nullable=False),
        sa.Column(
            "instance_id", sa.String(32), sa.ForeignKey("instances.id"), nullable=True, index=True
        ),
        sa.Column("device", sa.String(8), nullable=True),
        sa.Column("boot", sa.Boolean, nullable=False),
        sa.Column("delete_on_termination", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attached_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("instance_id", "device", name="uq_volume_device"),
    )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("volume_id", sa.String(32), nullable=True))
        batch.create_index("ix_jobs_volume_id", ["volume_id"])
    _root_disks_as_volumes(volumes)


def _root_disks_as_volumes(volumes: sa.Table) -> None:
    """Every instance that still has a root disk gets its boot volume row."""
    connection = op.get_bind()
    instances = sa.table(
        "instances",
        sa.column("id"),
        sa.column("account_id"),
        sa.column("image_id"),
        sa.column("host_node_id"),
        sa.column("root_disk_size"),
        sa.column("state"),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    images = sa.table("images", sa.column("id"), sa.column("virtual_size"))
    rows = connection.execute(
        sa.select(instances, images.c.virtual_size)
        .join(images, images.c.id == instances.c.image_id)
        .where(instances.c.state != "terminated")
    ).all()
    now = datetime.now(UTC)
    for row in rows:
        connection.execute(
            volumes.insert().values(
                id="vol-" + "".join(secrets.choice(_ALPHABET) for _ in range(8)),
                account_id=row.account_id,
                display_name="",
                size=max(row.virtual_size, row.root_disk_size * 1024**3),
                image_id=row.image_id,
                host_node_id=row.host_node_id,
                state="attached",
                state_reason="",
                instance_id=row.id,
                device="vda",
                boot=True,
                delete_on_termination=True,
                created_at=row.created_at,
                updated_at=now,
                attached_at=row.created_at,
                deleted_at=None,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_volume_id")
        batch.drop_column("volume_id")
    op.drop_table("volumes")

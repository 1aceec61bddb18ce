"""Installer ISOs and captured images: an image's kind, its creation's step, progress and
failure reason; the ISO in an instance's CD-ROM drive; the image a capture job makes.

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-10
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0012"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing images are disks, complete (progress 100), with no reason to give. The server
    # defaults stay: dropping them would make SQLite rebuild `images`, which the instances'
    # foreign keys forbid once any instance exists (and vdc always writes these columns).
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("kind", sa.String(8), nullable=False, server_default="disk"))
        batch.add_column(
            sa.Column("state_reason", sa.String(2048), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("progress", sa.Integer(), nullable=False, server_default="100"))
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("cdrom_image_id", sa.String(32), nullable=True))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("image_id", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("image_id")
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("cdrom_image_id")
    with op.batch_alter_table("images") as batch:
        for column in ("progress", "state_reason", "kind"):
            batch.drop_column(column)

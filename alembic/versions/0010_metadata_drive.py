"""Wakame-vdc's metadata drive: an image's default, each instance's choice, and the digest
of what its host holds.

Self-contained: it only adds columns with defaults, so it can be chained after another
revision without change.

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMNs, with defaults for the rows there are (they booted without a drive).
    # No batch mode: on SQLite it rebuilds the table, and dropping the old `images` or
    # `instances` is refused while other rows point at them (foreign keys are on). The
    # server defaults stay; the models do not need them, and no check compares them.
    op.add_column(
        "images",
        sa.Column("metadata_drive", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column(
        "instances",
        sa.Column("metadata_drive", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column(
        "instances",
        sa.Column("metadata_drive_digest", sa.String(64), nullable=False, server_default=""),
    )


def downgrade() -> None:
    # SQLite drops columns in place (3.35 and later): no table is rebuilt here either.
    op.drop_column("instances", "metadata_drive_digest")
    op.drop_column("instances", "metadata_drive")
    op.drop_column("images", "metadata_drive")

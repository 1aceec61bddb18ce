"""API keys get a name and can be revoked; accounts can be disabled and (softly) deleted;
web UI sign-ins become rows that signing out, revoking or disabling ends at once.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMNs (no batch copy): `accounts` is the parent of most tables, and
    # SQLite adds a nullable column or one with a default in place.
    op.add_column("accounts", sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("accounts", sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("api_keys", sa.Column("name", sa.String(64), nullable=False, server_default=""))
    op.add_column("api_keys", sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "api_key_id",
            sa.String(32),
            sa.ForeignKey("api_keys.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    # Plain DROP COLUMNs (SQLite 3.35 and later): no copy of the parent table.
    op.drop_table("web_sessions")
    for table, column in (
        ("api_keys", "revoked_at"),
        ("api_keys", "name"),
        ("accounts", "deleted_at"),
        ("accounts", "disabled_at"),
    ):
        op.drop_column(table, column)

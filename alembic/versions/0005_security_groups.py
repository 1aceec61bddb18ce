"""Security groups, their rules and memberships; every account gets its `default` group
and every live instance joins it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

import secrets
import string
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ALPHABET = string.ascii_lowercase + string.digits


def upgrade() -> None:
    groups = op.create_table(
        "security_groups",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "account_id", sa.String(32), sa.ForeignKey("accounts.id"), nullable=False, index=True
        ),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.String(1024), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("account_id", "name", name="uq_security_group_name"),
    )
    rules = op.create_table(
        "security_group_rules",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "group_id",
            sa.String(32),
            sa.ForeignKey("security_groups.id"),
            nullable=False,
            index=True,
        ),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("protocol", sa.String(8), nullable=False),
        sa.Column("from_port", sa.Integer, nullable=False),
        sa.Column("to_port", sa.Integer, nullable=False),
        sa.Column("cidr", sa.String(18), nullable=True),
        sa.Column(
            "source_group_id",
            sa.String(32),
            sa.ForeignKey("security_groups.id"),
            nullable=True,
            index=True,
        ),
    )
    links = op.create_table(
        "instance_security_groups",
        sa.Column("instance_id", sa.String(32), sa.ForeignKey("instances.id"), primary_key=True),
        sa.Column(
            "group_id",
            sa.String(32),
            sa.ForeignKey("security_groups.id"),
            primary_key=True,
            index=True,
        ),
    )
    _default_groups(groups, rules, links)


def _default_groups(groups: sa.Table, rules: sa.Table, links: sa.Table) -> None:
    connection = op.get_bind()
    now = datetime.now(UTC)
    accounts = connection.execute(sa.text("SELECT id FROM accounts")).scalars().all()
    for account_id in accounts:
        group_id = "sg-" + "".join(secrets.choice(_ALPHABET) for _ in range(8))
        connection.execute(
            groups.insert().values(
                id=group_id,
                account_id=account_id,
                name="default",
                description="Members reach each other; nothing else comes in",
                created_at=now,
                updated_at=now,
            )
        )
        connection.execute(
            rules.insert().values(
                group_id=group_id,
                position=0,
                protocol="any",
                from_port=-1,
                to_port=-1,
                cidr=None,
                source_group_id=group_id,
            )
        )
        live = connection.execute(
            sa.text("SELECT id FROM instances WHERE account_id = :a AND state != 'terminated'"),
            {"a": account_id},
        ).scalars()
        for instance_id in live:
            connection.execute(links.insert().values(instance_id=instance_id, group_id=group_id))


def downgrade() -> None:
    op.drop_table("instance_security_groups")
    op.drop_table("security_group_rules")
    op.drop_table("security_groups")

"""Installer ISOs and captured images: an image's kind, its creation's step, progress and
failure reason; the ISO in an instance's CD-ROM drive; the image a capture job makes.

And an instance's image is no foreign key any more: a terminated instance keeps the id of
the image it ran (as a volume keeps its image's), and must not stop that image's deletion
(it made deleting any image once used a 500). A live instance's image stays protected by
the image service, which refuses to delete an image in use.

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-10
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAMING = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}
IMAGE_FK = "fk_instances_image_id_images"


def upgrade() -> None:
    # Existing images are disks, complete (progress 100), with no reason to give.
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("kind", sa.String(8), nullable=False, server_default="disk"))
        batch.add_column(
            sa.Column("state_reason", sa.String(2048), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("progress", sa.Integer(), nullable=False, server_default="100"))
    with op.batch_alter_table("images") as batch:
        for column in ("kind", "state_reason", "progress"):
            batch.alter_column(column, server_default=None)
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("cdrom_image_id", sa.String(32), nullable=True))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("image_id", sa.String(32), nullable=True))
    _drop_image_foreign_key()


def _drop_image_foreign_key() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        # SQLite's foreign keys have no names: the naming convention gives it one to drop
        # (the table is made anew without it).
        with op.batch_alter_table("instances", naming_convention=NAMING) as batch:
            batch.drop_constraint(IMAGE_FK, type_="foreignkey")
        return
    for key in sa.inspect(bind).get_foreign_keys("instances"):
        if key["constrained_columns"] == ["image_id"] and key["name"]:
            op.drop_constraint(key["name"], "instances", type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("instances", naming_convention=NAMING) as batch:
        batch.create_foreign_key(IMAGE_FK, "images", ["image_id"], ["id"])
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("image_id")
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("cdrom_image_id")
    with op.batch_alter_table("images") as batch:
        for column in ("progress", "state_reason", "kind"):
            batch.drop_column(column)

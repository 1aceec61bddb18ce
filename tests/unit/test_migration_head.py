"""The schema check every vdc-manage command makes first."""

from __future__ import annotations


def test_the_quick_migration_head_is_alembics() -> None:
    """vdc-manage's quick check reads the migration files itself: it must agree with alembic."""
    from alembic.script import ScriptDirectory

    from app.migrations import alembic_config, head_revision, revisions

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert head_revision() == script.get_current_head()
    assert revisions() == {s.revision: s.down_revision for s in script.walk_revisions()}

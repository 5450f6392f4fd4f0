"""Schema 4: study events, the steering people do on a live study.

A narrowed range, a pinned parameter, a note: each is a row of ``study_events`` (who, when, what), so
every process sharing the study applies the same steering, and the history of it survives. Undoing an
event stamps ``undone_at`` instead of deleting the row, so ``show`` can still tell what was in force
when an older trial started.

Revision ID: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "study_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("study_id", sa.Integer, sa.ForeignKey("studies.id"), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("author", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("undone_at", sa.Float),
    )
    op.create_index("ix_study_events_study", "study_events", ["study_id"])


def downgrade() -> None:
    raise NotImplementedError("tunesmith does not downgrade databases; restore the backup copy made before upgrading")

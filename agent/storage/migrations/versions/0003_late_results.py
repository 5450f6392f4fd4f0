"""Schema 3: late results and the origin of requeued points.

A trial marked interrupted (its worker looked dead) may still finish: a stopped laptop wakes up, a paused
VM resumes. Its result is then kept and flagged ``late``. A point put back in the queue when its trial was
marked interrupted remembers that trial (``source_trial``), so a late result withdraws the copy that has
not started yet instead of evaluating the point twice.

Revision ID: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("trials", sa.Column("late", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("queue", sa.Column("source_trial", sa.Integer))


def downgrade() -> None:
    raise NotImplementedError("tunesmith does not downgrade databases; restore the backup copy made before upgrading")

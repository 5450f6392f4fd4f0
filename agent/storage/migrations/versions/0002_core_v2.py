"""Schema 2: change counters, explicit interruption, lineage, user attributes, intermediate values,
content-addressed artifacts, process identity of workers, model calls made for a trial.

Existing rows are carried over: trials that 0.1 marked ``failed`` with the error ``interrupted`` get the
``interrupted`` flag, every trial's sequence number is its row id (so the first incremental read returns
them all), and each study's next trial number follows its highest.

Revision ID: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("studies", sa.Column("seq", sa.Integer, nullable=False, server_default="0"))
    op.add_column("studies", sa.Column("next_number", sa.Integer, nullable=False, server_default="0"))
    op.add_column("workers", sa.Column("process_started_at", sa.Float))
    op.add_column("llm_calls", sa.Column("trial_number", sa.Integer))
    op.add_column("trials", sa.Column("interrupted", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("trials", sa.Column("parents", sa.Text, nullable=False, server_default="[]"))
    op.add_column("trials", sa.Column("user_attrs", sa.Text, nullable=False, server_default="{}"))
    op.add_column("trials", sa.Column("seq", sa.Integer, nullable=False, server_default="0"))
    op.add_column("trials", sa.Column("extras", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_index("ix_trials_study_seq", "trials", ["study_id", "seq"])
    op.create_table(
        "intermediate_values",
        sa.Column("trial_id", sa.Integer, sa.ForeignKey("trials.id"), primary_key=True),
        sa.Column("step", sa.Integer, primary_key=True),
        sa.Column("value", sa.Float, nullable=False),
    )
    op.create_table(
        "artifacts",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("media_type", sa.String(128), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("content", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "trial_artifacts",
        sa.Column("trial_id", sa.Integer, sa.ForeignKey("trials.id"), primary_key=True),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("digest", sa.String(64), sa.ForeignKey("artifacts.digest"), nullable=False),
    )
    op.execute(
        "UPDATE trials SET interrupted = "
        + ("true" if _is_postgres() else "1")
        + " WHERE state = 'failed' AND error = 'interrupted'"
    )
    op.execute("UPDATE trials SET seq = id")
    op.execute(
        "UPDATE studies SET "
        "seq = COALESCE((SELECT MAX(t.id) FROM trials t WHERE t.study_id = studies.id), 0), "
        "next_number = COALESCE((SELECT MAX(t.number) + 1 FROM trials t WHERE t.study_id = studies.id), 0)"
    )
    op.execute("UPDATE tunesmith_meta SET value = '2' WHERE key = 'schema_version'")


def downgrade() -> None:
    raise NotImplementedError("tunesmith does not downgrade databases; restore the backup copy made before upgrading")


def _is_postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"

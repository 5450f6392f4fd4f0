"""Schema 1: the tables of tunesmith 0.1 (studies, workers, trials, llm_calls, queue).

Databases written by 0.1 have these tables but no Alembic version; they are stamped with this revision
before being upgraded.

Revision ID: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tunesmith_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "studies",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("metric", sa.String(255)),
        sa.Column("space", sa.Text, nullable=False),
        sa.Column("settings", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "workers",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("heartbeat_at", sa.Float, nullable=False),
    )
    op.create_table(
        "llm_calls",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("study_id", sa.Integer, sa.ForeignKey("studies.id"), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("messages", sa.Text, nullable=False),
        sa.Column("reply", sa.Text),
        sa.Column("parsed", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("usd", sa.Float, nullable=False),
        sa.Column("latency_s", sa.Float, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("mode", sa.String(32)),
    )
    op.create_index("ix_llm_calls_study", "llm_calls", ["study_id"])
    op.create_table(
        "trials",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("study_id", sa.Integer, sa.ForeignKey("studies.id"), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("metrics", sa.Text, nullable=False),
        sa.Column("proposer", sa.String(64), nullable=False),
        sa.Column("rationale", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("feedback", sa.Text),
        sa.Column("worker_id", sa.String(128), sa.ForeignKey("workers.id")),
        sa.Column("llm_call_id", sa.Integer, sa.ForeignKey("llm_calls.id")),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float),
        sa.UniqueConstraint("study_id", "number", name="uq_trial_number"),
    )
    op.create_index("ix_trials_study_state", "trials", ["study_id", "state"])
    op.create_table(
        "queue",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("study_id", sa.Integer, sa.ForeignKey("studies.id"), nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("proposer", sa.String(64), nullable=False),
        sa.Column("rationale", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("trial_number", sa.Integer),
    )
    op.execute("INSERT INTO tunesmith_meta (key, value) VALUES ('schema_version', '1')")


def downgrade() -> None:
    for table in ("queue", "trials", "llm_calls", "workers", "studies", "tunesmith_meta"):
        op.drop_table(table)

"""The tables of the current schema (SQLAlchemy Core). Changing them needs a migration in ``migrations/``.

Why the columns are there:

* ``studies.seq`` is the study's change counter: every write to its trials takes the next value and
  stamps it on the trial row (``trials.seq``), so readers fetch only what changed since they last looked.
  ``studies.next_number`` hands out trial numbers. Both are updated under the study row's lock, which is
  also what serializes numbering and the budget check on PostgreSQL.
* ``trials.extras`` says a trial has intermediate values or artifacts, so that reading the (many) trials
  without any costs no extra query.
* ``trials.interrupted`` says a trial's process died: it produced nothing and does not use up the budget.
* ``artifacts`` are content-addressed (SHA-256): a program or prompt shared by many trials is stored once.
* ``study_events.undone_at`` marks an undone event instead of deleting it, so what was in force when an
  old trial started can still be told.
"""

from __future__ import annotations

import sqlalchemy as sa

#: The schema generation, written to ``tunesmith_meta`` so that older tunesmith releases (which read only
#: that key) refuse a newer database instead of writing to it.
SCHEMA_GENERATION = 2

metadata = sa.MetaData()

meta = sa.Table(
    "tunesmith_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

studies = sa.Table(
    "studies",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("direction", sa.String(16), nullable=False),
    sa.Column("metric", sa.String(255)),
    sa.Column("space", sa.Text, nullable=False),
    sa.Column("settings", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("seq", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_number", sa.Integer, nullable=False, server_default="0"),
)

workers = sa.Table(
    "workers",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("hostname", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("heartbeat_at", sa.Float, nullable=False),
    sa.Column("process_started_at", sa.Float),
)

llm_calls = sa.Table(
    "llm_calls",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("study_id", sa.Integer, sa.ForeignKey("studies.id"), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("purpose", sa.String(32), nullable=False),
    sa.Column("model", sa.String(255), nullable=False),
    sa.Column("messages", sa.Text, nullable=False),
    sa.Column("reply", sa.Text),
    sa.Column("parsed", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("prompt_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("completion_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("usd", sa.Float, nullable=False, default=0.0),
    sa.Column("latency_s", sa.Float, nullable=False, default=0.0),
    sa.Column("attempts", sa.Integer, nullable=False, default=1),
    sa.Column("mode", sa.String(32)),
    sa.Column("trial_number", sa.Integer),
    sa.Index("ix_llm_calls_study", "study_id"),
)

trials = sa.Table(
    "trials",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("study_id", sa.Integer, sa.ForeignKey("studies.id"), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("value", sa.Float),
    sa.Column("metrics", sa.Text, nullable=False, default="{}"),
    sa.Column("proposer", sa.String(64), nullable=False),
    sa.Column("rationale", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("feedback", sa.Text),
    sa.Column("worker_id", sa.String(128), sa.ForeignKey("workers.id")),
    sa.Column("llm_call_id", sa.Integer, sa.ForeignKey("llm_calls.id")),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
    sa.Column("interrupted", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("late", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("parents", sa.Text, nullable=False, server_default="[]"),
    sa.Column("user_attrs", sa.Text, nullable=False, server_default="{}"),
    sa.Column("seq", sa.Integer, nullable=False, server_default="0"),
    sa.Column("extras", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.UniqueConstraint("study_id", "number", name="uq_trial_number"),
    sa.Index("ix_trials_study_state", "study_id", "state"),
    sa.Index("ix_trials_study_seq", "study_id", "seq"),
)

intermediate_values = sa.Table(
    "intermediate_values",
    metadata,
    sa.Column("trial_id", sa.Integer, sa.ForeignKey("trials.id"), primary_key=True),
    sa.Column("step", sa.Integer, primary_key=True),
    sa.Column("value", sa.Float, nullable=False),
)

artifacts = sa.Table(
    "artifacts",
    metadata,
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("media_type", sa.String(128), nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("content", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

trial_artifacts = sa.Table(
    "trial_artifacts",
    metadata,
    sa.Column("trial_id", sa.Integer, sa.ForeignKey("trials.id"), primary_key=True),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("digest", sa.String(64), sa.ForeignKey("artifacts.digest"), nullable=False),
)

queue = sa.Table(
    "queue",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("study_id", sa.Integer, sa.ForeignKey("studies.id"), nullable=False),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("proposer", sa.String(64), nullable=False),
    sa.Column("rationale", sa.Text),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("trial_number", sa.Integer),
    sa.Column("source_trial", sa.Integer),
)

study_events = sa.Table(
    "study_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("study_id", sa.Integer, sa.ForeignKey("studies.id"), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("author", sa.String(255), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("undone_at", sa.Float),
    sa.Index("ix_study_events_study", "study_id"),
)

"""Durable storage of studies and trials (SQLAlchemy Core; SQLite in WAL mode by default).

Why it is shaped this way:

* A trial is written ``running`` *before* it is evaluated and finished in one transaction after, so a
  crash, ``kill -9`` or power loss (``synchronous=FULL``) never loses a completed trial.
* Trial numbers and the trial budget are decided inside one write transaction (``BEGIN IMMEDIATE`` on
  SQLite), so any number of processes can share a study without duplicates or overshoot.
* Each process registers as a *worker* with a heartbeat; on resume only the running trials of dead
  workers are marked interrupted, never those of a worker that is still alive.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from agent.space import ParamValue
from agent.trial import INTERRUPTED, Proposal, Trial, TrialState

SCHEMA_VERSION = 1
DEFAULT_STORAGE = "sqlite:///tunesmith.db"
#: A worker whose heartbeat is older than this is taken for dead, wherever it ran.
STALE_AFTER_S = 120.0

_metadata = sa.MetaData()

_meta = sa.Table(
    "tunesmith_meta",
    _metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

_studies = sa.Table(
    "studies",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("direction", sa.String(16), nullable=False),
    sa.Column("metric", sa.String(255)),
    sa.Column("space", sa.Text, nullable=False),
    sa.Column("settings", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

_workers = sa.Table(
    "workers",
    _metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("hostname", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("heartbeat_at", sa.Float, nullable=False),
)

_trials = sa.Table(
    "trials",
    _metadata,
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
    sa.UniqueConstraint("study_id", "number", name="uq_trial_number"),
    sa.Index("ix_trials_study_state", "study_id", "state"),
)

_llm_calls = sa.Table(
    "llm_calls",
    _metadata,
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
    sa.Index("ix_llm_calls_study", "study_id"),
)

_queue = sa.Table(
    "queue",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("study_id", sa.Integer, sa.ForeignKey("studies.id"), nullable=False),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("proposer", sa.String(64), nullable=False),
    sa.Column("rationale", sa.Text),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("trial_number", sa.Integer),
)


#: Fields of :class:`LLMCallRecord` stored as they are (the others are JSON or set by storage).
_PLAIN_CALL_COLUMNS = (
    "purpose",
    "model",
    "reply",
    "error",
    "prompt_tokens",
    "completion_tokens",
    "usd",
    "latency_s",
    "attempts",
    "mode",
)


class StorageError(RuntimeError):
    """The storage cannot be used as asked (wrong URL, newer schema, unknown study...)."""


class TrialBudgetReached(Exception):
    """No trial was started: the study already holds its budgeted number of trials."""


@dataclass(frozen=True)
class LLMCallRecord:
    """One model call as stored: what was asked, what came back, what it cost. Never holds a secret."""

    purpose: str
    model: str
    messages: list[dict[str, str]]
    reply: str | None = None
    parsed: Any = None
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usd: float = 0.0
    latency_s: float = 0.0
    attempts: int = 1
    mode: str | None = None
    id: int | None = None
    created_at: float = 0.0
    trial_numbers: tuple[int, ...] = ()


@dataclass(frozen=True)
class Spend:
    """What a study's model calls have cost so far."""

    calls: int = 0
    failed_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usd: float = 0.0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class StudyRecord:
    """A study as stored: identity and settings, not its trials."""

    id: int
    name: str
    direction: str
    metric: str | None
    space: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0


def _now() -> float:
    return time.time()


def _configure_sqlite(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # We issue BEGIN ourselves (below); the sqlite3 module's implicit transactions would defeat it.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout = 60000")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # IMMEDIATE takes the write lock up front: a deferred transaction that reads and then writes
        # fails with "database is locked" under contention instead of waiting its turn.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _make_engine(url: str, create: bool) -> Engine:
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise StorageError(
            f"storage {url!r} is not a database URL; use e.g. sqlite:///tunesmith.db or postgresql://host/db"
        ) from exc
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    if not parsed.database or parsed.database == ":memory:":
        raise StorageError("storage: in-memory SQLite cannot be shared; use a file, e.g. sqlite:///tunesmith.db")
    if not create and not Path(parsed.database).exists():
        raise StorageError(
            f"no database at {Path(parsed.database).resolve()}; run a job first (tunesmith run JOB.toml) "
            "or point --storage at the right file"
        )
    Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})
    _configure_sqlite(engine)
    return engine


class Storage:
    """All reads and writes of studies, trials, workers and the queue of enqueued points.

    Args:
        url: a SQLAlchemy database URL.
        create: create a missing SQLite file; readers pass False so that a typo does not leave an
            empty database behind.
    """

    def __init__(self, url: str = DEFAULT_STORAGE, create: bool = True) -> None:
        self.url = url
        self._engine = _make_engine(url, create)
        self._ensure_schema()

    def _ensure_schema(self) -> None:
        with self._write() as conn:
            _metadata.create_all(conn)
            row = conn.execute(sa.select(_meta.c.value).where(_meta.c.key == "schema_version")).first()
            if row is None:
                conn.execute(sa.insert(_meta).values(key="schema_version", value=str(SCHEMA_VERSION)))
            elif int(row.value) > SCHEMA_VERSION:
                raise StorageError(
                    f"{self.url} was written by a newer tunesmith (schema {row.value}, this one knows "
                    f"{SCHEMA_VERSION}); upgrade tunesmith to use it"
                )

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._engine.begin() as conn:
            yield conn

    def close(self) -> None:
        self._engine.dispose()

    # Studies ------------------------------------------------------------------------------------------
    def create_study(
        self, name: str, direction: str, metric: str | None, space: dict[str, Any], settings: dict[str, Any]
    ) -> StudyRecord:
        with self._write() as conn:
            if conn.execute(sa.select(_studies.c.id).where(_studies.c.name == name)).first():
                raise StorageError(f"a study named {name!r} already exists in {self.url}")
            created = _now()
            result = conn.execute(
                sa.insert(_studies).values(
                    name=name,
                    direction=direction,
                    metric=metric,
                    space=json.dumps(space),
                    settings=json.dumps(settings),
                    created_at=created,
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            study_id = key[0]
        return StudyRecord(study_id, name, direction, metric, space, settings, created)

    def update_settings(self, study_id: int, settings: dict[str, Any]) -> StudyRecord:
        with self._write() as conn:
            conn.execute(sa.update(_studies).where(_studies.c.id == study_id).values(settings=json.dumps(settings)))
            row = conn.execute(sa.select(_studies).where(_studies.c.id == study_id)).one()
        return _study_from_row(row)

    def get_study(self, name: str) -> StudyRecord | None:
        with self._write() as conn:
            row = conn.execute(sa.select(_studies).where(_studies.c.name == name)).first()
        return None if row is None else _study_from_row(row)

    def list_studies(self) -> list[StudyRecord]:
        with self._write() as conn:
            rows = conn.execute(sa.select(_studies).order_by(_studies.c.id)).all()
        return [_study_from_row(r) for r in rows]

    # Workers ------------------------------------------------------------------------------------------
    def register_worker(self, worker_id: str) -> None:
        now = _now()
        with self._write() as conn:
            conn.execute(
                sa.insert(_workers).values(
                    id=worker_id,
                    hostname=socket.gethostname(),
                    pid=os.getpid(),
                    started_at=now,
                    heartbeat_at=now,
                )
            )

    def heartbeat(self, worker_id: str) -> None:
        with self._write() as conn:
            conn.execute(sa.update(_workers).where(_workers.c.id == worker_id).values(heartbeat_at=_now()))

    # Trials -------------------------------------------------------------------------------------------
    def enqueue(self, study_id: int, params: Mapping[str, ParamValue], proposer: str = "enqueued") -> None:
        with self._write() as conn:
            conn.execute(
                sa.insert(_queue).values(
                    study_id=study_id, params=json.dumps(dict(params)), proposer=proposer, created_at=_now()
                )
            )

    def start_trial(
        self, study_id: int, worker_id: str, proposal: Proposal | None, max_trials: int | None = None
    ) -> Trial | None:
        """Number and store a running trial, atomically with the budget check.

        With ``proposal=None`` the oldest enqueued point is claimed instead, and None is returned when
        the queue is empty.

        Raises:
            TrialBudgetReached: the study already holds ``max_trials`` trials (interrupted ones aside).
        """
        with self._write() as conn:
            if max_trials is not None and self._count_budgeted(conn, study_id) >= max_trials:
                raise TrialBudgetReached
            queued = None
            if proposal is None:
                queued = conn.execute(
                    sa.select(_queue)
                    .where(_queue.c.study_id == study_id, _queue.c.trial_number.is_(None))
                    .order_by(_queue.c.id)
                    .limit(1)
                ).first()
                if queued is None:
                    return None
                proposal = Proposal(json.loads(queued.params), queued.proposer, queued.rationale)
            number = conn.execute(
                sa.select(sa.func.coalesce(sa.func.max(_trials.c.number) + 1, 0)).where(_trials.c.study_id == study_id)
            ).scalar_one()
            started = _now()
            conn.execute(
                sa.insert(_trials).values(
                    study_id=study_id,
                    number=number,
                    state=TrialState.RUNNING.value,
                    params=json.dumps(dict(proposal.params)),
                    metrics="{}",
                    proposer=proposal.proposer,
                    rationale=proposal.rationale,
                    worker_id=worker_id,
                    llm_call_id=proposal.llm_call_id,
                    started_at=started,
                )
            )
            if queued is not None:
                conn.execute(sa.update(_queue).where(_queue.c.id == queued.id).values(trial_number=number))
        return Trial(
            number=number,
            params=dict(proposal.params),
            state=TrialState.RUNNING,
            proposer=proposal.proposer,
            rationale=proposal.rationale,
            started_at=datetime.fromtimestamp(started, UTC),
        )

    def finish_trial(
        self,
        study_id: int,
        number: int,
        state: TrialState,
        value: float | None = None,
        metrics: Mapping[str, float] | None = None,
        error: str | None = None,
        feedback: str | None = None,
    ) -> Trial:
        """Record a trial's outcome in one transaction; only a running trial can be finished."""
        if not state.is_finished:
            raise ValueError("finish_trial needs a finished state")
        with self._write() as conn:
            updated = conn.execute(
                sa.update(_trials)
                .where(
                    _trials.c.study_id == study_id,
                    _trials.c.number == number,
                    _trials.c.state == TrialState.RUNNING.value,
                )
                .values(
                    state=state.value,
                    value=value,
                    metrics=json.dumps(dict(metrics or {})),
                    error=error,
                    feedback=feedback,
                    finished_at=_now(),
                )
            ).rowcount
            row = conn.execute(
                sa.select(_trials).where(_trials.c.study_id == study_id, _trials.c.number == number)
            ).first()
        if row is None:
            raise StorageError(f"trial {number} does not exist in this study")
        if not updated:
            raise StorageError(f"trial {number} is already {row.state}; a trial can be told only once")
        return _trial_from_row(row)

    def trials(self, study_id: int, states: Sequence[TrialState] | None = None) -> list[Trial]:
        query = sa.select(_trials).where(_trials.c.study_id == study_id).order_by(_trials.c.number)
        if states is not None:
            query = query.where(_trials.c.state.in_([s.value for s in states]))
        with self._write() as conn:
            rows = conn.execute(query).all()
        return [_trial_from_row(r) for r in rows]

    # Model calls -------------------------------------------------------------------------------------------
    def record_llm_call(self, study_id: int, call: LLMCallRecord) -> int:
        """Store a model call; returns its id, which trials made from it refer to."""
        with self._write() as conn:
            result = conn.execute(
                sa.insert(_llm_calls).values(
                    study_id=study_id,
                    created_at=_now(),
                    messages=json.dumps(call.messages),
                    parsed=None if call.parsed is None else json.dumps(call.parsed),
                    **{name: getattr(call, name) for name in _PLAIN_CALL_COLUMNS},
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def llm_calls(self, study_id: int) -> list[LLMCallRecord]:
        """Every model call of a study, oldest first, with the numbers of the trials each produced."""
        with self._write() as conn:
            rows = conn.execute(
                sa.select(_llm_calls).where(_llm_calls.c.study_id == study_id).order_by(_llm_calls.c.id)
            ).all()
            links = conn.execute(
                sa.select(_trials.c.llm_call_id, _trials.c.number).where(
                    _trials.c.study_id == study_id, _trials.c.llm_call_id.is_not(None)
                )
            ).all()
        produced: dict[int, list[int]] = {}
        for call_id, number in links:
            produced.setdefault(call_id, []).append(number)
        return [
            LLMCallRecord(
                messages=json.loads(r.messages),
                parsed=None if r.parsed is None else json.loads(r.parsed),
                id=r.id,
                created_at=r.created_at,
                trial_numbers=tuple(sorted(produced.get(r.id, []))),
                **{name: getattr(r, name) for name in _PLAIN_CALL_COLUMNS},
            )
            for r in rows
        ]

    def spend(self, study_id: int) -> Spend:
        c = _llm_calls.c
        with self._write() as conn:
            row = conn.execute(
                sa.select(
                    sa.func.count(),
                    sa.func.count(c.error),
                    sa.func.coalesce(sa.func.sum(c.prompt_tokens), 0),
                    sa.func.coalesce(sa.func.sum(c.completion_tokens), 0),
                    sa.func.coalesce(sa.func.sum(c.usd), 0.0),
                ).where(c.study_id == study_id)
            ).one()
        return Spend(int(row[0]), int(row[1]), int(row[2]), int(row[3]), float(row[4]))

    def count_budgeted_trials(self, study_id: int) -> int:
        with self._write() as conn:
            return self._count_budgeted(conn, study_id)

    @staticmethod
    def _count_budgeted(conn: Connection, study_id: int) -> int:
        # A trial interrupted by a dead process produced no result, so it does not use up the budget.
        interrupted = sa.and_(_trials.c.state == TrialState.FAILED.value, _trials.c.error == INTERRUPTED)
        return conn.execute(
            sa.select(sa.func.count()).select_from(_trials).where(_trials.c.study_id == study_id, sa.not_(interrupted))
        ).scalar_one()

    def recover_interrupted(self, study_id: int, requeue: bool = False) -> list[int]:
        """Mark the running trials of dead workers failed ("interrupted"); optionally enqueue them again.

        A worker is dead when its heartbeat is older than :data:`STALE_AFTER_S`, or when it ran on this
        host and its process is gone. Returns the numbers of the trials marked.
        """
        now = _now()
        host = socket.gethostname()
        with self._write() as conn:
            rows = conn.execute(
                sa.select(_trials.c.number, _trials.c.params, _trials.c.proposer, _workers)
                .join(_workers, _workers.c.id == _trials.c.worker_id, isouter=True)
                .where(_trials.c.study_id == study_id, _trials.c.state == TrialState.RUNNING.value)
            ).all()
            dead = [
                r
                for r in rows
                if r.heartbeat_at is None
                or now - r.heartbeat_at > STALE_AFTER_S
                or (r.hostname == host and not _pid_alive(r.pid))
            ]
            for r in dead:
                conn.execute(
                    sa.update(_trials)
                    .where(_trials.c.study_id == study_id, _trials.c.number == r.number)
                    .values(state=TrialState.FAILED.value, error=INTERRUPTED, finished_at=now)
                )
                if requeue:
                    conn.execute(
                        sa.insert(_queue).values(
                            study_id=study_id, params=r.params, proposer=r.proposer, created_at=now
                        )
                    )
        return [r.number for r in dead]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed process its parent has not yet reaped is a zombie: dead for our purposes
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _study_from_row(row: Any) -> StudyRecord:
    return StudyRecord(
        id=row.id,
        name=row.name,
        direction=row.direction,
        metric=row.metric,
        space=json.loads(row.space),
        settings=json.loads(row.settings),
        created_at=row.created_at,
    )


def _trial_from_row(row: Any) -> Trial:
    return Trial(
        number=row.number,
        params=json.loads(row.params),
        state=TrialState(row.state),
        proposer=row.proposer,
        started_at=datetime.fromtimestamp(row.started_at, UTC),
        value=row.value,
        metrics=json.loads(row.metrics),
        rationale=row.rationale,
        error=row.error,
        feedback=row.feedback,
        finished_at=None if row.finished_at is None else datetime.fromtimestamp(row.finished_at, UTC),
    )

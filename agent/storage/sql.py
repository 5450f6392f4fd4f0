"""The SQL storage (SQLAlchemy Core): SQLite in WAL mode by default, PostgreSQL by URL.

Why it is shaped this way:

* Writes are short transactions that take the write lock up front (``BEGIN IMMEDIATE`` on SQLite; the
  study row's lock, ``SELECT ... FOR UPDATE``, on PostgreSQL), so numbering, the budget check and the
  change counter are decided atomically however many processes share a study. A transaction that still
  loses a race (a PostgreSQL deadlock or serialization failure, a SQLite lock held past the busy timeout)
  is retried whole.
* Reads take no write lock: on SQLite a deferred transaction reads a WAL snapshot while writers go on.
* ``synchronous=FULL``: a power loss after a commit loses nothing committed.
* The schema is brought up to date on open (:mod:`agent.storage.migrate`), after a backup copy of an
  existing SQLite file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from agent.secrets import redact, redact_data, register_url_credentials, without_credentials
from agent.space import ParamValue
from agent.storage import migrate
from agent.storage.base import Changes, Clash, Storage, Telling, telling
from agent.storage.liveness import WorkerIdentity, is_dead
from agent.storage.records import (
    LLMCallRecord,
    ProposalConflict,
    Spend,
    StorageError,
    StorageUnavailable,
    StorageURLError,
    StudyEvent,
    StudyExists,
    StudyRecord,
    TrialBudgetReached,
)
from agent.storage.schema import (
    artifacts,
    intermediate_values,
    llm_calls,
    queue,
    studies,
    study_events,
    trial_artifacts,
    trials,
    workers,
)
from agent.trial import INTERRUPTED, Proposal, Trial, TrialState

log = logging.getLogger(__name__)
T = TypeVar("T")

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
    "trial_number",
)
#: Whole-transaction retries after a lost race (deadlock, serialization failure, lock timeout).
_ATTEMPTS = 8
_SQLITE_BUSY_MS = 60_000
_POSTGRES_HINT = 'pip install "tunesmith[postgres]" (psycopg 3)'


def _now() -> float:
    return time.time()


class SQLStorage(Storage):
    """A storage in a SQL database.

    Args:
        url: a SQLAlchemy URL: ``sqlite:///path.db`` (the file is created) or ``postgresql://user@host/db``.
        create: create a missing SQLite file; readers pass False so that a typo does not leave an empty
            database behind.
        upgrade: bring an older schema up to date (after a backup copy); False refuses an old database
            with a message that says how to upgrade it.
    """

    def __init__(self, url: str, create: bool = True, upgrade: bool = True) -> None:
        register_url_credentials(url)  # the database password must not reach logs or terminal output
        self.url = url
        self._engine, self._sqlite_path = _make_engine(url, create)
        self._dialect = self._engine.dialect.name
        try:
            self._ensure_schema(upgrade)
        except sa.exc.DBAPIError as exc:
            self._engine.dispose()
            raise StorageUnavailable(_explain(f"cannot open {self}", exc)) from None

    def __repr__(self) -> str:
        return f"SQLStorage({str(self)!r})"

    def __str__(self) -> str:
        return self._engine.url.render_as_string(hide_password=True)

    # Transactions -------------------------------------------------------------------------------------
    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self._engine.connect() as conn, conn.begin():
                yield conn
        except sa.exc.DBAPIError as exc:
            raise StorageUnavailable(_explain(f"{self}: cannot read", exc)) from exc

    def _write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in a write transaction, retried whole when it loses a race."""
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                with self._engine.connect() as conn:
                    conn.execution_options(tunesmith_write=True)
                    with conn.begin():
                        return work(conn)
            except sa.exc.OperationalError as exc:
                if attempt == _ATTEMPTS or not _is_lost_race(exc):
                    raise StorageUnavailable(_explain(f"{self}: cannot write", exc)) from exc
                log.debug("transaction lost a race (%s); retrying", exc.orig)
                time.sleep(min(0.05 * 2**attempt, 1.0))
        raise AssertionError("unreachable")

    def _ensure_schema(self, upgrade: bool) -> None:
        found = migrate.needs_upgrade(self._engine, self.url)
        if found is None:
            return
        if found and not upgrade:
            raise StorageError(
                f"{self.url} has schema revision {found}, older than this tunesmith's {migrate.HEAD}; "
                f"upgrade it with: tunesmith storage upgrade {self.url}"
            )
        if found and self._sqlite_path is not None:
            migrate.backup_sqlite(self._sqlite_path, found)

        def work(conn: Connection) -> None:
            if self._dialect == "postgresql":  # one upgrader at a time; others wait, then find it done
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7460348)"))
            migrate.upgrade_locked(conn, self.url)

        self._write(work)

    def close(self) -> None:
        self._engine.dispose()

    # Studies ------------------------------------------------------------------------------------------
    def create_study(
        self, name: str, direction: str, metric: str | None, space: dict[str, Any], settings: dict[str, Any]
    ) -> StudyRecord:
        created = _now()

        def work(conn: Connection) -> int:
            if conn.execute(sa.select(studies.c.id).where(studies.c.name == name)).first():
                raise StudyExists(f"a study named {name!r} already exists in {self.url}")
            result = conn.execute(
                sa.insert(studies).values(
                    name=name,
                    direction=direction,
                    metric=metric,
                    space=json.dumps(space),
                    settings=json.dumps(redact_data(settings)),
                    created_at=created,
                    seq=0,
                    next_number=0,
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

        try:
            study_id = self._write(work)
        except sa.exc.IntegrityError:  # PostgreSQL: another process inserted the name after our check
            raise StudyExists(f"a study named {name!r} already exists in {self.url}") from None
        return StudyRecord(study_id, name, direction, metric, space, redact_data(settings), created)

    def get_study(self, name: str) -> StudyRecord | None:
        with self._read() as conn:
            row = conn.execute(sa.select(studies).where(studies.c.name == name)).first()
        return None if row is None else _study_from_row(row)

    def list_studies(self) -> list[StudyRecord]:
        with self._read() as conn:
            rows = conn.execute(sa.select(studies).order_by(studies.c.id)).all()
        return [_study_from_row(r) for r in rows]

    def update_settings(self, study_id: int, settings: dict[str, Any]) -> StudyRecord:
        def work(conn: Connection) -> Any:
            conn.execute(
                sa.update(studies).where(studies.c.id == study_id).values(settings=json.dumps(redact_data(settings)))
            )
            return conn.execute(sa.select(studies).where(studies.c.id == study_id)).one()

        return _study_from_row(self._write(work))

    # Steering ------------------------------------------------------------------------------------------
    def add_event(self, study_id: int, kind: str, payload: dict[str, Any], author: str) -> StudyEvent:
        encoded = json.dumps(redact_data(payload))  # a note may quote a key; JSON is checked before writing
        created = _now()

        def work(conn: Connection) -> int:
            self._advance(conn, study_id)  # refuses an unknown study; orders events like trials
            result = conn.execute(
                sa.insert(study_events).values(
                    study_id=study_id, created_at=created, author=author, kind=kind, payload=encoded
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

        return StudyEvent(self._write(work), kind, json.loads(encoded), author, created)

    def events(self, study_id: int) -> list[StudyEvent]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(study_events).where(study_events.c.study_id == study_id).order_by(study_events.c.id)
            ).all()
        return [_event_from_row(r) for r in rows]

    def undo_event(self, study_id: int) -> StudyEvent | None:
        def work(conn: Connection) -> StudyEvent | None:
            self._advance(conn, study_id)  # the study row's lock: two undos never take the same event
            row = conn.execute(
                sa.select(study_events)
                .where(study_events.c.study_id == study_id, study_events.c.undone_at.is_(None))
                .order_by(study_events.c.id.desc())
                .limit(1)
            ).first()
            if row is None:
                return None
            undone = _now()
            conn.execute(sa.update(study_events).where(study_events.c.id == row.id).values(undone_at=undone))
            return replace(_event_from_row(row), undone_at=undone)

        return self._write(work)

    # Workers ------------------------------------------------------------------------------------------
    def register_worker(self, worker_id: str, identity: WorkerIdentity | None = None) -> None:
        me = identity or WorkerIdentity.of_this_process()
        now = _now()
        self._write(
            lambda conn: conn.execute(
                sa.insert(workers).values(
                    id=worker_id,
                    hostname=me.hostname,
                    pid=me.pid,
                    process_started_at=me.process_started_at,
                    started_at=now,
                    heartbeat_at=now,
                )
            )
        )

    def heartbeat(self, worker_id: str) -> None:
        now = _now()
        self._write(
            lambda conn: conn.execute(sa.update(workers).where(workers.c.id == worker_id).values(heartbeat_at=now))
        )

    # Trials -------------------------------------------------------------------------------------------
    def _advance(self, conn: Connection, study_id: int, new_trial: bool = False) -> tuple[int, int]:
        """Lock the study row and take its next sequence number (and, for a new trial, its number).

        One ``UPDATE ... RETURNING``: it takes the row lock on PostgreSQL (SQLite's write lock covers it),
        and every trial write of the study goes through it, so writers line up in sequence order.
        Returns (sequence number, trial number or -1).
        """
        values: dict[str, Any] = {"seq": studies.c.seq + 1}
        if new_trial:
            values["next_number"] = studies.c.next_number + 1
        row = conn.execute(
            sa.update(studies)
            .where(studies.c.id == study_id)
            .values(**values)
            .returning(studies.c.seq, studies.c.next_number)
        ).first()
        if row is None:
            raise StorageError(f"study id {study_id} does not exist in {self.url}")
        return int(row.seq), int(row.next_number) - 1 if new_trial else -1

    def enqueue(
        self,
        study_id: int,
        params: Mapping[str, ParamValue],
        proposer: str = "enqueued",
        rationale: str | None = None,
        once: bool = False,
    ) -> bool:
        def work(conn: Connection) -> bool:
            self._advance(conn, study_id)  # serializes enqueuers: two runs cannot both see the point missing
            if once:
                held = conn.execute(sa.select(queue.c.params).where(queue.c.study_id == study_id)).scalars()
                if any(json.loads(text) == dict(params) for text in held):
                    return False
            conn.execute(
                sa.insert(queue).values(
                    study_id=study_id,
                    params=json.dumps(dict(params)),
                    proposer=proposer,
                    rationale=rationale,
                    created_at=_now(),
                )
            )
            return True

        return self._write(work)

    def start_trial(
        self,
        study_id: int,
        worker_id: str,
        proposal: Proposal | None,
        max_trials: int | None = None,
        since: int | None = None,
        clash: Clash | None = None,
    ) -> Trial | None:
        def work(conn: Connection) -> Trial | None:
            seq, number = self._advance(conn, study_id, new_trial=True)  # rolled back if no trial starts
            if max_trials is not None and self._count_budgeted(conn, study_id) >= max_trials:
                raise TrialBudgetReached(max_trials)
            queued = None
            chosen = proposal
            if chosen is None:
                queued = conn.execute(
                    sa.select(queue)
                    .where(queue.c.study_id == study_id, queue.c.trial_number.is_(None))
                    .order_by(queue.c.id)
                    .limit(1)
                ).first()
                if queued is None:
                    return None
                chosen = Proposal(json.loads(queued.params), queued.proposer, queued.rationale)
            elif clash is not None and since is not None:
                # Read after _advance took the study's lock: every trial written before this one is visible.
                unseen = conn.execute(
                    sa.select(trials.c.params).where(trials.c.study_id == study_id, trials.c.seq > since)
                ).scalars()
                if any(clash(json.loads(params)) for params in unseen):
                    raise ProposalConflict("a trial changed since the proposal was made holds the same point")
            started = _now()
            conn.execute(
                sa.insert(trials).values(
                    study_id=study_id,
                    number=number,
                    state=TrialState.RUNNING.value,
                    params=json.dumps(dict(chosen.params)),
                    metrics="{}",
                    proposer=chosen.proposer,
                    rationale=chosen.rationale,
                    worker_id=worker_id,
                    llm_call_id=chosen.llm_call_id,
                    parents=json.dumps(list(chosen.parents)),
                    started_at=started,
                    seq=seq,
                )
            )
            if queued is not None:
                conn.execute(sa.update(queue).where(queue.c.id == queued.id).values(trial_number=number))
            return Trial(
                number=number,
                params=dict(chosen.params),
                state=TrialState.RUNNING,
                proposer=chosen.proposer,
                rationale=chosen.rationale,
                started_at=datetime.fromtimestamp(started, UTC),
                llm_call_id=chosen.llm_call_id,
                parents=tuple(chosen.parents),
            )

        return self._write(work)

    def finish_trial(
        self,
        study_id: int,
        number: int,
        state: TrialState,
        value: float | None = None,
        metrics: Mapping[str, float] | None = None,
        error: str | None = None,
        feedback: str | None = None,
        interrupted: bool = False,
    ) -> Trial:
        if not state.is_finished:
            raise ValueError("finish_trial needs a finished state")

        def work(conn: Connection) -> Trial:
            seq, _ = self._advance(conn, study_id)
            row = conn.execute(
                sa.select(trials.c.state, trials.c.interrupted, trials.c.late).where(
                    trials.c.study_id == study_id, trials.c.number == number
                )
            ).first()
            if row is None:
                raise StorageError(f"trial {number} does not exist in this study")
            told = telling(number, TrialState(row.state), bool(row.interrupted), bool(row.late), interrupted)
            if told is Telling.ALREADY:
                return self._trial(conn, study_id, number)
            if told is Telling.LATE:
                conn.execute(  # its point was put back in the queue: withdraw the copy nobody has started
                    sa.delete(queue).where(
                        queue.c.study_id == study_id, queue.c.source_trial == number, queue.c.trial_number.is_(None)
                    )
                )
            conn.execute(
                sa.update(trials)
                .where(trials.c.study_id == study_id, trials.c.number == number)
                .values(
                    state=state.value,
                    value=value,
                    metrics=json.dumps(dict(metrics or {})),
                    error=redact(error),
                    feedback=redact(feedback),
                    interrupted=interrupted,
                    late=told is Telling.LATE,
                    finished_at=_now(),
                    seq=seq,
                )
            )
            return self._trial(conn, study_id, number)

        return self._write(work)

    def _trial(self, conn: Connection, study_id: int, number: int) -> Trial:
        row = conn.execute(sa.select(trials).where(trials.c.study_id == study_id, trials.c.number == number)).one()
        return self._trials_from_rows(conn, [row])[0]

    def _touch(self, conn: Connection, study_id: int, number: int, extras: bool = False) -> int:
        """Give a trial a new sequence number (it changed), flag its extras; returns its row id."""
        seq, _ = self._advance(conn, study_id)
        row = conn.execute(
            sa.select(trials.c.id).where(trials.c.study_id == study_id, trials.c.number == number)
        ).first()
        if row is None:
            raise StorageError(f"trial {number} does not exist in this study")
        values: dict[str, Any] = {"seq": seq, "extras": True} if extras else {"seq": seq}
        conn.execute(sa.update(trials).where(trials.c.id == row.id).values(**values))
        return int(row.id)

    def changes(self, study_id: int, since: int = -1) -> Changes:
        unclaimed = (
            sa.select(sa.func.count())
            .select_from(queue)
            .where(queue.c.study_id == study_id, queue.c.trial_number.is_(None))
            .scalar_subquery()
        )
        with self._read() as conn:
            head = conn.execute(sa.select(studies.c.seq, unclaimed).where(studies.c.id == study_id)).first()
            if head is None:
                raise StorageError(f"study id {study_id} does not exist in {self.url}")
            seq, queued = int(head[0]), int(head[1])
            rows: Sequence[Any] = []
            if seq > since:
                rows = conn.execute(
                    sa.select(trials).where(trials.c.study_id == study_id, trials.c.seq > since).order_by(trials.c.seq)
                ).all()
            return Changes(self._trials_from_rows(conn, rows), seq, queued)

    def _trials_from_rows(self, conn: Connection, rows: Sequence[Any]) -> list[Trial]:
        ids = [r.id for r in rows if r.extras]
        steps: dict[int, list[tuple[int, float]]] = {}
        named: dict[int, dict[str, str]] = {}
        for chunk in _chunks(ids, 500):  # SQLite limits the parameters of one statement
            for trial_id, step, value in conn.execute(
                sa.select(intermediate_values.c.trial_id, intermediate_values.c.step, intermediate_values.c.value)
                .where(intermediate_values.c.trial_id.in_(chunk))
                .order_by(intermediate_values.c.step)
            ):
                steps.setdefault(trial_id, []).append((int(step), float(value)))
            for trial_id, name, digest in conn.execute(
                sa.select(trial_artifacts.c.trial_id, trial_artifacts.c.name, trial_artifacts.c.digest).where(
                    trial_artifacts.c.trial_id.in_(chunk)
                )
            ):
                named.setdefault(trial_id, {})[name] = digest
        return [_trial_from_row(r, tuple(steps.get(r.id, ())), named.get(r.id, {})) for r in rows]

    def count_budgeted_trials(self, study_id: int) -> int:
        with self._read() as conn:
            return self._count_budgeted(conn, study_id)

    @staticmethod
    def _count_budgeted(conn: Connection, study_id: int) -> int:
        return int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(trials)
                .where(trials.c.study_id == study_id, trials.c.interrupted.is_(False))
            ).scalar_one()
        )

    def recover_interrupted(self, study_id: int, requeue: bool = False) -> list[int]:
        def work(conn: Connection) -> list[int]:
            seq, _ = self._advance(conn, study_id)  # one recoverer at a time: a point is requeued once
            rows = conn.execute(
                sa.select(trials.c.number, trials.c.params, trials.c.proposer, trials.c.rationale, workers)
                .join(workers, workers.c.id == trials.c.worker_id, isouter=True)
                .where(trials.c.study_id == study_id, trials.c.state == TrialState.RUNNING.value)
            ).all()
            now = _now()
            dead = [
                r
                for r in rows
                if is_dead(
                    None if r.hostname is None else WorkerIdentity(r.hostname, r.pid, r.process_started_at),
                    r.heartbeat_at,
                    now,
                )
            ]
            for r in dead:
                conn.execute(
                    sa.update(trials)
                    .where(trials.c.study_id == study_id, trials.c.number == r.number)
                    .values(
                        state=TrialState.FAILED.value,
                        error=INTERRUPTED,
                        interrupted=True,
                        finished_at=now,
                        seq=seq,
                    )
                )
                if requeue:
                    conn.execute(
                        sa.insert(queue).values(
                            study_id=study_id,
                            params=r.params,
                            proposer=r.proposer,
                            rationale=r.rationale,
                            created_at=now,
                            source_trial=r.number,
                        )
                    )
            return [int(r.number) for r in dead]

        return self._write(work)

    # What a running trial reports ----------------------------------------------------------------------
    def report(self, study_id: int, number: int, step: int, value: float) -> None:
        def work(conn: Connection) -> None:
            trial_id = self._touch(conn, study_id, number, extras=True)
            conn.execute(
                sa.delete(intermediate_values).where(
                    intermediate_values.c.trial_id == trial_id, intermediate_values.c.step == step
                )
            )
            conn.execute(sa.insert(intermediate_values).values(trial_id=trial_id, step=step, value=float(value)))

        self._write(work)

    def set_user_attr(self, study_id: int, number: int, key: str, value: Any) -> None:
        encoded = json.dumps(value)  # refuses what JSON cannot hold, before anything is written

        def work(conn: Connection) -> None:
            trial_id = self._touch(conn, study_id, number)
            current = json.loads(
                conn.execute(sa.select(trials.c.user_attrs).where(trials.c.id == trial_id)).scalar_one()
            )
            current[key] = json.loads(encoded)
            conn.execute(sa.update(trials).where(trials.c.id == trial_id).values(user_attrs=json.dumps(current)))

        self._write(work)

    def put_artifact(self, content: bytes | str, media_type: str = "text/plain") -> str:
        data = content.encode() if isinstance(content, str) else bytes(content)
        digest = hashlib.sha256(data).hexdigest()

        def work(conn: Connection) -> None:
            if conn.execute(sa.select(artifacts.c.digest).where(artifacts.c.digest == digest)).first() is None:
                conn.execute(
                    sa.insert(artifacts).values(
                        digest=digest, media_type=media_type, size=len(data), content=data, created_at=_now()
                    )
                )

        with contextlib.suppress(sa.exc.IntegrityError):  # stored by another process a moment ago
            self._write(work)
        return digest

    def attach_artifact(self, study_id: int, number: int, name: str, digest: str) -> None:
        def work(conn: Connection) -> None:
            if conn.execute(sa.select(artifacts.c.digest).where(artifacts.c.digest == digest)).first() is None:
                raise StorageError(f"no artifact with digest {digest}; store it with put_artifact first")
            trial_id = self._touch(conn, study_id, number, extras=True)
            conn.execute(
                sa.delete(trial_artifacts).where(trial_artifacts.c.trial_id == trial_id, trial_artifacts.c.name == name)
            )
            conn.execute(sa.insert(trial_artifacts).values(trial_id=trial_id, name=name, digest=digest))

        self._write(work)

    def get_artifact(self, digest: str) -> bytes:
        with self._read() as conn:
            row = conn.execute(sa.select(artifacts.c.content).where(artifacts.c.digest == digest)).first()
        if row is None:
            raise StorageError(f"no artifact with digest {digest} in {self.url}")
        return bytes(row.content)

    # Model calls --------------------------------------------------------------------------------------
    def record_llm_call(self, study_id: int, call: LLMCallRecord) -> int:
        call = call.redacted()

        def work(conn: Connection) -> int:
            result = conn.execute(
                sa.insert(llm_calls).values(
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

        return self._write(work)

    def llm_calls(self, study_id: int) -> list[LLMCallRecord]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(llm_calls).where(llm_calls.c.study_id == study_id).order_by(llm_calls.c.id)
            ).all()
            links = conn.execute(
                sa.select(trials.c.llm_call_id, trials.c.number).where(
                    trials.c.study_id == study_id, trials.c.llm_call_id.is_not(None)
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
        c = llm_calls.c
        with self._read() as conn:
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


# Engines ------------------------------------------------------------------------------------------------
def _make_engine(url: str, create: bool) -> tuple[Engine, Path | None]:
    shown = without_credentials(url)
    try:
        parsed = sa.engine.make_url(url)
        backend = parsed.get_backend_name()
        parsed.get_dialect()  # an unknown kind of database ("foo://") is refused here, not at the first query
    except sa.exc.NoSuchModuleError:
        raise StorageURLError(
            f"{shown!r}: unknown kind of database {parsed.drivername!r}; use sqlite:///FILE.db or "
            "postgresql://USER@HOST/DATABASE"
        ) from None
    except sa.exc.ArgumentError:
        raise StorageURLError(
            f"{shown!r} is not a database URL; use e.g. sqlite:///tunesmith.db or postgresql://USER@HOST/DATABASE"
        ) from None
    if backend == "postgresql":
        if parsed.drivername == "postgresql":  # SQLAlchemy's default is psycopg2; we ship psycopg 3
            parsed = parsed.set(drivername="postgresql+psycopg")
        try:
            engine = sa.create_engine(parsed, pool_pre_ping=True)
        except ImportError:
            driver = parsed.get_driver_name()
            hint = (
                f"PostgreSQL needs its driver: {_POSTGRES_HINT}"
                if driver == "psycopg"
                else f"its driver {driver} is not installed; write postgresql://... for psycopg 3: {_POSTGRES_HINT}"
            )
            raise StorageURLError(f"{shown!r}: {hint}") from None
        return engine, None
    if backend != "sqlite":
        try:
            return sa.create_engine(parsed, pool_pre_ping=True), None
        except ImportError as exc:
            raise StorageURLError(f"{shown}: the database driver is not installed ({exc})") from None
    if not parsed.database or parsed.database == ":memory:":
        raise StorageError(
            "storage: in-memory SQLite cannot be shared between connections; use a file "
            "(sqlite:///tunesmith.db) or InMemoryStorage()"
        )
    path = Path(parsed.database)
    if not create and not path.exists():
        raise StorageError(
            f"no database at {path.resolve()}; run a job first (tunesmith run JOB.toml) "
            "or point --storage at the right file"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageUnavailable(
            f"cannot create the folder of {path}: {exc.strerror or exc}; point storage at a writable place"
        ) from None
    engine = sa.create_engine(parsed, connect_args={"timeout": _SQLITE_BUSY_MS / 1000, "check_same_thread": False})
    _configure_sqlite(engine)
    return engine, path


def _configure_sqlite(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # We issue BEGIN ourselves (below); the sqlite3 module's implicit transactions would defeat it.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_MS}")
        _enable_wal(cursor)
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # IMMEDIATE takes the write lock up front: a deferred transaction that reads and then writes fails
        # with "database is locked" under contention instead of waiting its turn. Reads stay deferred.
        write = connection.get_execution_options().get("tunesmith_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _enable_wal(cursor: Any) -> None:
    """Switch a new file to WAL. The switch does not wait on busy_timeout, so wait here when others hold it."""
    import sqlite3

    deadline = time.monotonic() + _SQLITE_BUSY_MS / 1000
    delay = 0.01
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


#: What to do about the database errors a user can fix, by a fragment of the driver's message.
_FIXES = (
    ("readonly", "the database is read-only: make the file and its folder writable, or use another storage"),
    ("read-only", "the database is read-only: make the file and its folder writable, or use another storage"),
    ("disk is full", "the disk is full: free some space and run again; finished trials are kept"),
    (
        "disk i/o error",
        "a disk I/O error (a full or failing disk, a lost mount): fix it and run again; finished trials are kept",
    ),
    ("unable to open database file", "check that the file's folder exists and is writable"),
    ("connection refused", "is the database server running, and are the host and port right?"),
    ("could not translate host name", "check the host name in the storage URL"),
    ("password authentication failed", "check the user and password (or use a ~/.pgpass file)"),
    ("does not exist", "create the database first (createdb NAME)"),
)


def _explain(what: str, exc: sa.exc.DBAPIError) -> str:
    """One line: what failed, the driver's reason, and the fix when it is one a user can make."""
    reason = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
    lower = str(exc.orig).lower()
    fix = next((fix for fragment, fix in _FIXES if fragment in lower), None)
    return f"{what}: {reason}" + (f" ({fix})" if fix else "")


def _is_lost_race(exc: sa.exc.OperationalError) -> bool:
    code = getattr(exc.orig, "sqlstate", None)
    if code in ("40001", "40P01"):  # serialization failure, deadlock detected
        return True
    return "database is locked" in str(exc.orig)


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


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


def _event_from_row(row: Any) -> StudyEvent:
    return StudyEvent(row.id, row.kind, json.loads(row.payload), row.author, row.created_at, row.undone_at)


def _trial_from_row(row: Any, intermediate: tuple[tuple[int, float], ...], named: dict[str, str]) -> Trial:
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
        interrupted=bool(row.interrupted),
        late=bool(row.late),
        feedback=row.feedback,
        finished_at=None if row.finished_at is None else datetime.fromtimestamp(row.finished_at, UTC),
        llm_call_id=row.llm_call_id,
        parents=tuple(json.loads(row.parents)),
        intermediate=intermediate,
        user_attrs=json.loads(row.user_attrs),
        artifacts=named,
    )

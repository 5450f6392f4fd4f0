"""A storage in this process's memory: for tests, notebooks and throwaway studies.

It keeps every rule of the protocol (numbering and the budget decided atomically, one finish per trial,
change counters) under one lock, so the loop behaves exactly as on SQL; it simply forgets everything when
the process ends, and other processes cannot see it.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from agent.secrets import redact, redact_data
from agent.space import ParamValue
from agent.storage.base import Changes, Clash, Storage, Telling, telling
from agent.storage.liveness import WorkerIdentity, is_dead
from agent.storage.records import (
    LLMCallRecord,
    ProposalConflict,
    Spend,
    StorageError,
    StudyEvent,
    StudyExists,
    StudyRecord,
    TrialBudgetReached,
)
from agent.trial import INTERRUPTED, Proposal, Trial, TrialState


@dataclass
class _Queued:
    proposal: Proposal
    source_trial: int | None = None
    claimed: bool = False


@dataclass
class _Study:
    record: StudyRecord
    seq: int = 0
    trials: list[Trial] = field(default_factory=list)
    trial_seq: list[int] = field(default_factory=list)
    trial_worker: list[str] = field(default_factory=list)
    queue: list[_Queued] = field(default_factory=list)
    calls: list[LLMCallRecord] = field(default_factory=list)
    events: list[StudyEvent] = field(default_factory=list)


class InMemoryStorage(Storage):
    """A storage that lives as long as this object (see the module docstring)."""

    def __init__(self) -> None:
        self.url = "memory:"
        self._lock = threading.RLock()
        self._studies: dict[int, _Study] = {}
        self._workers: dict[str, tuple[WorkerIdentity, float]] = {}
        self._artifacts: dict[str, bytes] = {}
        self._event_ids = 0

    def __repr__(self) -> str:
        return "InMemoryStorage()"

    def _study(self, study_id: int) -> _Study:
        try:
            return self._studies[study_id]
        except KeyError:
            raise StorageError(f"study id {study_id} does not exist in {self.url}") from None

    def _touch(self, study: _Study, index: int, trial: Trial) -> None:
        study.seq += 1
        study.trials[index] = trial
        study.trial_seq[index] = study.seq

    @staticmethod
    def _changed(study: _Study, since: int) -> list[Trial]:
        """The trials written after sequence number ``since``."""
        return [t for t, seq in zip(study.trials, study.trial_seq, strict=True) if seq > since]

    def _trial_index(self, study: _Study, number: int) -> int:
        if not 0 <= number < len(study.trials):
            raise StorageError(f"trial {number} does not exist in this study")
        return number

    # Studies ------------------------------------------------------------------------------------------
    def create_study(
        self, name: str, direction: str, metric: str | None, space: dict[str, Any], settings: dict[str, Any]
    ) -> StudyRecord:
        with self._lock:
            if self.get_study(name) is not None:
                raise StudyExists(f"a study named {name!r} already exists in {self.url}")
            record = StudyRecord(
                len(self._studies) + 1,
                name,
                direction,
                metric,
                json.loads(json.dumps(space)),
                redact_data(settings),
                time.time(),
            )
            self._studies[record.id] = _Study(record)
            return record

    def get_study(self, name: str) -> StudyRecord | None:
        with self._lock:
            return next((s.record for s in self._studies.values() if s.record.name == name), None)

    def list_studies(self) -> list[StudyRecord]:
        with self._lock:
            return [s.record for s in self._studies.values()]

    def update_settings(self, study_id: int, settings: dict[str, Any]) -> StudyRecord:
        with self._lock:
            study = self._study(study_id)
            study.record = replace(study.record, settings=redact_data(settings))
            return study.record

    # Steering ------------------------------------------------------------------------------------------
    def add_event(self, study_id: int, kind: str, payload: dict[str, Any], author: str) -> StudyEvent:
        copied = json.loads(json.dumps(redact_data(payload)))  # what SQL storage stores, as a copy
        with self._lock:
            study = self._study(study_id)
            self._event_ids += 1
            event = StudyEvent(self._event_ids, kind, copied, author, time.time())
            study.events.append(event)
            return event

    def events(self, study_id: int) -> list[StudyEvent]:
        with self._lock:
            return list(self._study(study_id).events)

    def undo_event(self, study_id: int) -> StudyEvent | None:
        with self._lock:
            events = self._study(study_id).events
            index = next((i for i in reversed(range(len(events))) if events[i].active), None)
            if index is None:
                return None
            events[index] = replace(events[index], undone_at=time.time())
            return events[index]

    # Workers ------------------------------------------------------------------------------------------
    def register_worker(self, worker_id: str, identity: WorkerIdentity | None = None) -> None:
        with self._lock:
            self._workers[worker_id] = (identity or WorkerIdentity.of_this_process(), time.time())

    def heartbeat(self, worker_id: str) -> None:
        with self._lock:
            if worker_id in self._workers:
                self._workers[worker_id] = (self._workers[worker_id][0], time.time())

    # Trials -------------------------------------------------------------------------------------------
    def enqueue(
        self,
        study_id: int,
        params: Mapping[str, ParamValue],
        proposer: str = "enqueued",
        rationale: str | None = None,
        once: bool = False,
    ) -> bool:
        with self._lock:
            study = self._study(study_id)
            if once and any(dict(q.proposal.params) == dict(params) for q in study.queue):
                return False
            study.queue.append(_Queued(Proposal(dict(params), proposer, rationale)))
            study.seq += 1
            return True

    def start_trial(
        self,
        study_id: int,
        worker_id: str,
        proposal: Proposal | None,
        max_trials: int | None = None,
        since: int | None = None,
        clash: Clash | None = None,
    ) -> Trial | None:
        with self._lock:
            study = self._study(study_id)
            if max_trials is not None and self._count_budgeted(study) >= max_trials:
                raise TrialBudgetReached(max_trials)
            if proposal is None:
                waiting = next((q for q in study.queue if not q.claimed), None)
                if waiting is None:
                    return None
                waiting.claimed = True
                proposal = waiting.proposal
            elif clash is not None and since is not None and any(clash(t.params) for t in self._changed(study, since)):
                raise ProposalConflict("a trial changed since the proposal was made holds the same point")
            trial = Trial(
                number=len(study.trials),
                params=dict(proposal.params),
                state=TrialState.RUNNING,
                proposer=proposal.proposer,
                rationale=proposal.rationale,
                started_at=datetime.now(UTC),
                llm_call_id=proposal.llm_call_id,
                parents=tuple(proposal.parents),
            )
            study.trials.append(trial)
            study.trial_seq.append(0)
            study.trial_worker.append(worker_id)
            self._touch(study, trial.number, trial)
            return trial

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
        with self._lock:
            study = self._study(study_id)
            index = self._trial_index(study, number)
            current = study.trials[index]
            told = telling(number, current.state, current.interrupted, current.late, interrupted)
            if told is Telling.ALREADY:
                return current
            if told is Telling.LATE:  # withdraw the copy of its point requeued meanwhile, unless it started
                study.queue = [q for q in study.queue if q.claimed or q.source_trial != number]
            finished = replace(
                current,
                state=state,
                value=value,
                metrics=dict(metrics or {}),
                error=redact(error),
                feedback=redact(feedback),
                interrupted=interrupted,
                late=told is Telling.LATE,
                finished_at=datetime.now(UTC),
            )
            self._touch(study, index, finished)
            return finished

    def changes(self, study_id: int, since: int = -1) -> Changes:
        with self._lock:
            study = self._study(study_id)
            return Changes(self._changed(study, since), study.seq, sum(not q.claimed for q in study.queue))

    def count_budgeted_trials(self, study_id: int) -> int:
        with self._lock:
            return self._count_budgeted(self._study(study_id))

    @staticmethod
    def _count_budgeted(study: _Study) -> int:
        return sum(not t.interrupted for t in study.trials)

    def recover_interrupted(self, study_id: int, requeue: bool = False) -> list[int]:
        with self._lock:
            study = self._study(study_id)
            marked = []
            for index, trial in enumerate(study.trials):
                if trial.state is not TrialState.RUNNING:
                    continue
                worker = self._workers.get(study.trial_worker[index])
                if not is_dead(None if worker is None else worker[0], None if worker is None else worker[1]):
                    continue
                self._touch(
                    study,
                    index,
                    replace(
                        trial,
                        state=TrialState.FAILED,
                        error=INTERRUPTED,
                        interrupted=True,
                        finished_at=datetime.now(UTC),
                    ),
                )
                if requeue:
                    study.queue.append(
                        _Queued(Proposal(dict(trial.params), trial.proposer, trial.rationale), trial.number)
                    )
                marked.append(trial.number)
            return marked

    # What a running trial reports ----------------------------------------------------------------------
    def report(self, study_id: int, number: int, step: int, value: float) -> None:
        with self._lock:
            study = self._study(study_id)
            index = self._trial_index(study, number)
            trial = study.trials[index]
            steps = {s: v for s, v in trial.intermediate if s != step}
            steps[step] = float(value)
            self._touch(study, index, replace(trial, intermediate=tuple(sorted(steps.items()))))

    def set_user_attr(self, study_id: int, number: int, key: str, value: Any) -> None:
        copied = json.loads(json.dumps(value))  # the same values as SQL storage accepts, and a copy
        with self._lock:
            study = self._study(study_id)
            index = self._trial_index(study, number)
            trial = study.trials[index]
            self._touch(study, index, replace(trial, user_attrs={**trial.user_attrs, key: copied}))

    def put_artifact(self, content: bytes | str, media_type: str = "text/plain") -> str:
        data = content.encode() if isinstance(content, str) else bytes(content)
        digest = hashlib.sha256(data).hexdigest()
        with self._lock:
            self._artifacts.setdefault(digest, data)
        return digest

    def attach_artifact(self, study_id: int, number: int, name: str, digest: str) -> None:
        with self._lock:
            if digest not in self._artifacts:
                raise StorageError(f"no artifact with digest {digest}; store it with put_artifact first")
            study = self._study(study_id)
            index = self._trial_index(study, number)
            trial = study.trials[index]
            self._touch(study, index, replace(trial, artifacts={**trial.artifacts, name: digest}))

    def get_artifact(self, digest: str) -> bytes:
        with self._lock:
            try:
                return self._artifacts[digest]
            except KeyError:
                raise StorageError(f"no artifact with digest {digest} in {self.url}") from None

    # Model calls --------------------------------------------------------------------------------------
    def record_llm_call(self, study_id: int, call: LLMCallRecord) -> int:
        with self._lock:
            study = self._study(study_id)
            call_id = sum(len(s.calls) for s in self._studies.values()) + 1
            study.calls.append(replace(call.redacted(), id=call_id, created_at=time.time()))
            return call_id

    def llm_calls(self, study_id: int) -> list[LLMCallRecord]:
        with self._lock:
            study = self._study(study_id)
            produced: dict[int, list[int]] = {}
            for trial in study.trials:
                if trial.llm_call_id is not None:
                    produced.setdefault(trial.llm_call_id, []).append(trial.number)
            return [replace(c, trial_numbers=tuple(produced.get(c.id or 0, ()))) for c in study.calls]

    def spend(self, study_id: int) -> Spend:
        with self._lock:
            calls = self._study(study_id).calls
            return Spend(
                calls=len(calls),
                failed_calls=sum(c.error is not None for c in calls),
                prompt_tokens=sum(c.prompt_tokens for c in calls),
                completion_tokens=sum(c.completion_tokens for c in calls),
                usd=sum(c.usd for c in calls),
            )

"""The storage protocol: everything the loop, the CLI and the proposers ask of a storage.

Two implementations ship: :class:`agent.storage.sql.SQLStorage` (SQLite by default, PostgreSQL by URL)
and :class:`agent.storage.memory.InMemoryStorage` (tests, throwaway studies). Both pass the contract
suite in :mod:`agent.testing.storages`; a new backend subclasses this class and that suite.

Rules every implementation keeps:

* A trial is stored ``running`` before it is evaluated (that row is the *reservation* of its point) and
  finished once, in one transaction, after; a crash never loses a completed trial.
* Trial numbers and the trial budget are decided atomically, so concurrent workers and processes
  neither duplicate a number nor overshoot the budget.
* Every change to a study's trials gets a new, increasing *sequence number*, so a reader can ask for
  what changed since it last looked (:meth:`Storage.changes`) instead of re-reading the study.
"""

from __future__ import annotations

import enum
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agent.space import ParamValue
from agent.storage.liveness import WorkerIdentity
from agent.storage.records import LLMCallRecord, Spend, StorageError, StudyEvent, StudyRecord
from agent.trial import Proposal, Trial, TrialState

log = logging.getLogger(__name__)

#: Decides whether a trial started since a proposal was made makes that proposal a duplicate.
Clash = Callable[[Mapping[str, ParamValue]], bool]


@dataclass(frozen=True)
class Changes:
    """What changed in a study since a sequence number.

    Attributes:
        trials: the trials created or modified since then, in their current form.
        seq: the study's sequence number now; pass it to the next :meth:`Storage.changes` call.
        queued: enqueued points not yet claimed by a trial.
    """

    trials: list[Trial]
    seq: int
    queued: int


class Storage(ABC):
    """Durable studies, trials, workers, enqueued points, artifacts and model calls."""

    url: str

    # Studies ------------------------------------------------------------------------------------------
    @abstractmethod
    def create_study(
        self, name: str, direction: str, metric: str | None, space: dict[str, Any], settings: dict[str, Any]
    ) -> StudyRecord:
        """Store a new study.

        Raises:
            StudyExists: the name is taken (possibly by another process a moment ago).
        """

    @abstractmethod
    def get_study(self, name: str) -> StudyRecord | None: ...

    @abstractmethod
    def list_studies(self) -> list[StudyRecord]: ...

    @abstractmethod
    def update_settings(self, study_id: int, settings: dict[str, Any]) -> StudyRecord: ...

    # Steering ------------------------------------------------------------------------------------------
    @abstractmethod
    def add_event(self, study_id: int, kind: str, payload: dict[str, Any], author: str) -> StudyEvent:
        """Store an act of steering (see :class:`StudyEvent`); every process sharing the study sees it."""

    @abstractmethod
    def events(self, study_id: int) -> list[StudyEvent]:
        """Every event of a study, oldest first, undone ones included."""

    @abstractmethod
    def undo_event(self, study_id: int) -> StudyEvent | None:
        """Mark the newest event still in force undone, atomically; returns it, or None when none is in force."""

    # Workers ------------------------------------------------------------------------------------------
    @abstractmethod
    def register_worker(self, worker_id: str, identity: WorkerIdentity | None = None) -> None:
        """Record a process (by default this one: host, PID, process start time) as the worker ``worker_id``."""

    @abstractmethod
    def heartbeat(self, worker_id: str) -> None: ...

    # Trials -------------------------------------------------------------------------------------------
    @abstractmethod
    def enqueue(
        self,
        study_id: int,
        params: Mapping[str, ParamValue],
        proposer: str = "enqueued",
        rationale: str | None = None,
        once: bool = False,
    ) -> bool:
        """Queue a point for the next trial started without a proposal; returns whether it was queued.

        With ``once``, a point this study's queue already held (waiting or claimed) is not queued again:
        a job file's points are enqueued by every run of the job (and by runs started together), yet must
        be evaluated once in all. The check and the insert are one transaction.
        """

    @abstractmethod
    def start_trial(
        self,
        study_id: int,
        worker_id: str,
        proposal: Proposal | None,
        max_trials: int | None = None,
        since: int | None = None,
        clash: Clash | None = None,
    ) -> Trial | None:
        """Number and store a running trial, atomically with the budget check.

        With ``proposal=None`` the oldest enqueued point is claimed instead, and None is returned when
        the queue is empty.

        Args:
            since: the sequence number of the view the proposal was made from (the :attr:`Changes.seq` of
                the last read behind it); with ``clash``, every trial changed after it is checked in the
                reserving transaction, running or finished. Sequence numbers, not trial numbers: a view can
                lack a trial numbered below one it holds (its own process's, stored since its last read),
                and a trial the view held as running may have finished since.

        Raises:
            TrialBudgetReached: the study already holds ``max_trials`` trials (interrupted ones aside).
            ProposalConflict: ``clash`` matched a trial changed after ``since``.
        """

    @abstractmethod
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
        """Record a trial's outcome in one transaction; only a running trial can be finished.

        Two exceptions, both for a trial some other process marked interrupted because its worker looked
        dead (a stopped laptop, a paused VM): its result, when it comes after all, is kept as a *late*
        result (and the copy of its point requeued meanwhile is withdrawn if nobody started it); and its
        own process marking it interrupted again is a no-op. Error and feedback texts are stored with
        every known secret scrubbed.

        Raises:
            StorageError: no such trial, or it is already finished.
        """

    @abstractmethod
    def changes(self, study_id: int, since: int = -1) -> Changes:
        """The trials changed after sequence number ``since`` (all of them for -1), and the new one."""

    def trials(self, study_id: int) -> list[Trial]:
        """Every trial of a study, by number."""
        return sorted(self.changes(study_id).trials, key=lambda t: t.number)

    @abstractmethod
    def count_budgeted_trials(self, study_id: int) -> int:
        """Trials that count against a trial budget: all but the interrupted ones."""

    @abstractmethod
    def recover_interrupted(self, study_id: int, requeue: bool = False) -> list[int]:
        """Mark the running trials of dead workers interrupted; optionally enqueue their points again.

        Returns the numbers of the trials marked. A worker is dead when it ran on this host and its
        process is gone (or its PID now belongs to another process), or when it ran elsewhere and its
        heartbeat is older than :data:`agent.storage.records.STALE_AFTER_S`.
        """

    # What a running trial reports ----------------------------------------------------------------------
    @abstractmethod
    def report(self, study_id: int, number: int, step: int, value: float) -> None:
        """Store an intermediate value (for pruning); a second report of a step replaces the first."""

    @abstractmethod
    def set_user_attr(self, study_id: int, number: int, key: str, value: Any) -> None:
        """Attach a JSON value to a trial."""

    @abstractmethod
    def put_artifact(self, content: bytes | str, media_type: str = "text/plain") -> str:
        """Store ``content`` once however many trials share it; returns its digest (SHA-256, hex)."""

    @abstractmethod
    def attach_artifact(self, study_id: int, number: int, name: str, digest: str) -> None:
        """Name a stored artifact on a trial (``"program"``, ``"prompt"``, ``"stdout"``...)."""

    @abstractmethod
    def get_artifact(self, digest: str) -> bytes:
        """The content of an artifact.

        Raises:
            StorageError: no artifact has that digest.
        """

    # Model calls --------------------------------------------------------------------------------------
    @abstractmethod
    def record_llm_call(self, study_id: int, call: LLMCallRecord) -> int:
        """Store a model call; returns its id, which trials made from it refer to."""

    @abstractmethod
    def llm_calls(self, study_id: int) -> list[LLMCallRecord]:
        """Every model call of a study, oldest first, with the numbers of the trials each produced."""

    @abstractmethod
    def spend(self, study_id: int) -> Spend: ...

    def close(self) -> None:  # noqa: B027 - a storage without connections has nothing to release
        """Release connections; the storage may not be used afterwards."""


class Telling(enum.Enum):
    """What an outcome told for a trial does, by :func:`telling`."""

    RECORD = "record"  # the trial is running: store the outcome
    LATE = "late"  # another process marked it interrupted, yet its result came: store it, flagged late
    ALREADY = "already"  # it was marked interrupted, and its own process now says the same: nothing to do


def telling(number: int, state: TrialState, interrupted: bool, late: bool, reporting_interrupted: bool) -> Telling:
    """The rule every storage applies to an outcome told for trial ``number``, stored as ``state`` with the
    flags ``interrupted`` and ``late``.

    Raises:
        StorageError: the trial is finished and the outcome is neither its late result nor a second
            interruption: a trial can be told only once.
    """
    if state is TrialState.RUNNING:
        return Telling.RECORD
    if interrupted and reporting_interrupted:
        return Telling.ALREADY
    if interrupted and not late:
        log.warning("trial %d was marked interrupted, but its result arrived: kept as a late result", number)
        return Telling.LATE
    raise StorageError(f"trial {number} is already {state}; a trial can be told only once")

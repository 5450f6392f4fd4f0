"""The loop: propose → validate → evaluate → record, for one trial and for a whole run.

:func:`run_trial` is one trial's life. :class:`Coordinator` runs many of them over an
:class:`~agent.executors.Executor`: it proposes, validates and reserves in this thread (the study's
``ask``), hands the evaluation to the executor (inline, threads, processes — or any other executor), and
records each result as it arrives (the study's ``tell``), keeping up to ``executor.max_workers`` trials
in flight until a budget or ``n_trials`` says stop.

What a run guarantees:

* A proposal is stored as a running trial (reserved) before it is evaluated, so concurrent workers and
  processes never get the same point.
* An evaluator that raises (a bug, not a failing objective: those are returned as failed evaluations)
  fails its trial with the traceback as feedback, lets the other running trials finish, and is raised to
  the caller.
* Ctrl-C or SIGTERM (turned into ``KeyboardInterrupt`` by the CLI) kills every evaluation's process
  tree, marks every running trial of this run interrupted, and re-raises, within seconds.
* A broken objective does not burn the budget: when the first trials of a run fail one after another
  for the same reason (``max_consecutive_failures`` of them, none of the run's trials complete), no
  further trial is started, the running ones finish, and the run stops with
  :attr:`StopReason.REPEATED_FAILURE` and a :class:`~agent.errors.RepeatedFailure` that says why.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.budget import BudgetAccount
from agent.display import failure_cause
from agent.errors import BudgetExhausted, RepeatedFailure
from agent.executors import Executor
from agent.storage import StorageError
from agent.trial import INTERRUPTED, Trial, TrialState
from tools.evaluation import Evaluation, Evaluator, tail

if TYPE_CHECKING:
    from agent.study import Study

log = logging.getLogger(__name__)

Callback = Callable[["Study", Trial], None]
#: How often a waiting run wakes up to look at its wall-time budget.
_POLL_S = 0.5


class StopReason(enum.StrEnum):
    """Why a run stopped starting trials."""

    N_TRIALS = "n_trials"
    TRIAL_BUDGET = "trial budget"
    WALL_TIME = "wall time"
    TOKEN_BUDGET = "token budget"
    MONEY_BUDGET = "money budget"
    CALL_BUDGET = "call budget"
    REPEATED_FAILURE = "repeated failure"
    ERROR = "error"


@dataclass(frozen=True)
class RunSummary:
    """What one run did and why it stopped.

    ``repeated_failure`` is the error that explains a stop on :attr:`StopReason.REPEATED_FAILURE` (its
    ``count``, ``cause`` and a message saying what to do), None otherwise.
    """

    trials_run: int
    stopped_because: StopReason
    repeated_failure: RepeatedFailure | None = None


#: Trials of a run that may fail in a row for the same reason, before any completes, by default.
MAX_CONSECUTIVE_FAILURES = 5
#: Lines of the last failed trial's output quoted by :class:`~agent.errors.RepeatedFailure`.
_QUOTED_LINES = 6


class FailureStreak:
    """Watches a run's finished trials for the same failure, again and again, before any trial completes.

    Trials that fail for different reasons restart the count (an objective failing at random is not
    broken); a trial that completes or is pruned ends the watch for the run (the objective works, and
    some points are just bad); an interrupted trial is no evidence either way.

    Args:
        limit: failures in a row that stop the run; None never stops it.
    """

    def __init__(self, limit: int | None = MAX_CONSECUTIVE_FAILURES) -> None:
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(f"max_consecutive_failures must be a positive integer or None, got {limit!r}")
        self.limit = limit
        self.count = 0
        self.cause: str | None = None
        self._finished = 0
        self._last: Trial | None = None

    def add(self, trial: Trial) -> None:
        """Count a recorded trial; once :attr:`tripped`, the streak is kept as it is for :meth:`error`."""
        if self.limit is None or self.tripped or trial.interrupted:
            return
        self._finished += 1
        cause = failure_cause(trial)
        if cause is None:  # it completed (or was pruned): the objective works
            self.limit = None
            return
        self.count = self.count + 1 if cause == self.cause else 1
        self.cause, self._last = cause, trial

    @property
    def tripped(self) -> bool:
        return self.limit is not None and self.count >= self.limit

    def error(self) -> RepeatedFailure:
        """What the run raises once :attr:`tripped`: the shared cause and the tail of the last output."""
        assert self.cause is not None and self._last is not None
        which = (
            f"the first {self.count} trials of this run all"
            if self.count == self._finished
            else f"{self.count} trials in a row of this run (none complete)"
        )
        message = (
            f"{which} failed with the same error: {self.cause}; fix the objective (the trials are kept) or pass "
            "max_consecutive_failures=None to go on"
        )
        printed = [line for line in (self._last.feedback or "").splitlines() if line.strip()]
        if printed:
            quoted = "\n".join(f"    {line}" for line in printed[-_QUOTED_LINES:])
            message += f"\nthe output of trial {self._last.number} ends with:\n{quoted}"
        return RepeatedFailure(message, self.count, self.cause)


def run_trial(study: Study, evaluator: Evaluator, executor: Executor, max_trials: int | None = None) -> Trial:
    """One trial's life: PROPOSE and VALIDATE (reserved in storage), EVALUATE, RECORD.

    Raises:
        BudgetExhausted: no trial was started (the trial budget is spent).
        Exception: the evaluator broke; the trial is recorded as failed first.
    """
    trial, evaluation = begin_trial(study, evaluator, executor, max_trials)
    try:
        evaluation.exception()  # waits for the executor
    except BaseException:
        mark_interrupted(study, [trial])
        raise
    return record(study, trial, evaluation)


def begin_trial(
    study: Study, evaluator: Evaluator, executor: Executor, max_trials: int | None = None, last: bool = True
) -> tuple[Trial, Future[Evaluation]]:
    """PROPOSE, VALIDATE and reserve a trial (``study.ask``), then hand it to the executor to EVALUATE.

    ``last=False`` lets the study prepare the next proposal while this trial runs.
    """
    trial = study.ask(max_trials=max_trials, last=last)
    try:
        return trial, executor.submit(evaluator, trial)
    except BaseException:
        mark_interrupted(study, [trial])
        raise


def record(study: Study, trial: Trial, future: Future[Evaluation]) -> Trial:
    """RECORD a finished evaluation; an evaluator that raised fails the trial and the error is re-raised."""
    error = future.exception()
    if error is None:
        return study.tell(trial, future.result())
    study.tell(
        trial,
        state=TrialState.FAILED,
        error=f"the evaluator raised {type(error).__name__}: {error}",
        feedback=tail("".join(traceback.format_exception(error))),
    )
    raise error


def mark_interrupted(study: Study, trials: Sequence[Trial]) -> None:
    """Record ``trials`` as interrupted: they produced nothing and do not count against the budget."""
    for trial in trials:
        with contextlib.suppress(StorageError):  # already recorded: it finished while we were stopping
            study.tell(trial, state=TrialState.FAILED, error=INTERRUPTED, interrupted=True)


class Coordinator:
    """Runs trials over an executor until ``n_trials``, a budget, repeated failures, an error or an interrupt
    stops it."""

    def __init__(
        self,
        study: Study,
        evaluator: Evaluator,
        executor: Executor,
        n_trials: int | None = None,
        account: BudgetAccount | None = None,
        callbacks: Sequence[Callback] = (),
        max_consecutive_failures: int | None = MAX_CONSECUTIVE_FAILURES,
    ) -> None:
        self.study = study
        self.evaluator = evaluator
        self.executor = executor
        self.n_trials = n_trials
        self.account = account or BudgetAccount(None)
        self.callbacks = list(callbacks)
        self.streak = FailureStreak(max_consecutive_failures)
        self._in_flight: dict[Future[Evaluation], Trial] = {}
        self._finishing: list[tuple[Trial, Future[Evaluation]]] = []  # evaluated, not yet recorded
        self._started = 0
        self._ran = 0

    def run(self) -> RunSummary:
        reason: StopReason | None = None
        failure: BaseException | None = None
        try:
            while True:
                reason = self._fill(reason)
                if not self._in_flight:
                    break
                done, _ = wait(self._in_flight, timeout=_POLL_S, return_when=FIRST_COMPLETED)
                self._finishing = [(self._in_flight.pop(future), future) for future in done]
                # With several workers, refill the freed slots before recording: a worker then waits for one
                # proposal, not for the records of every trial that finished with its own. Not with one
                # worker, where starting the next trial may mean evaluating it (inline) before this one is
                # stored; and not after an evaluator broke.
                refill = self.executor.max_workers > 1
                if refill and not any(future.exception() is not None for _, future in self._finishing):
                    reason = self._fill(reason)
                while self._finishing:
                    trial, future = self._finishing.pop(0)
                    try:
                        self._finish(trial, future)
                    except Exception as exc:
                        failure = failure or exc
                        reason = StopReason.ERROR
                if self.streak.tripped and reason is not StopReason.ERROR:
                    reason = StopReason.REPEATED_FAILURE  # start nothing more; the running trials finish
        except BaseException:
            self._interrupt()
            raise
        self.executor.close()
        if failure is not None:
            raise failure
        assert reason is not None
        if reason is StopReason.REPEATED_FAILURE:
            return RunSummary(self._ran, reason, self.streak.error())
        return RunSummary(self._ran, reason)

    def _fill(self, reason: StopReason | None) -> StopReason | None:
        """Start trials until every worker is busy or a limit (or an earlier error: ``reason``) says stop."""
        while reason is None and len(self._in_flight) < self.executor.max_workers:
            reason = self._start_one()
        return reason

    def _start_one(self) -> StopReason | None:
        """Start a trial; returns why not when a limit is reached."""
        if self.n_trials is not None and self._started >= self.n_trials:
            return StopReason.N_TRIALS
        spent = self.study.spend() if self.account.counts_spend else None
        exhausted = self.account.exhausted(spent) or self.study.model_refused
        if exhausted is not None:
            return StopReason(exhausted)
        try:
            last = self.n_trials is not None and self._started + 1 >= self.n_trials
            trial, evaluation = begin_trial(
                self.study, self.evaluator, self.executor, self.account.budget.trials, last=last
            )
        except BudgetExhausted as exc:
            return StopReason(exc.reason)
        self._started += 1
        self._in_flight[evaluation] = trial
        return None

    def _finish(self, trial: Trial, future: Future[Evaluation]) -> None:
        finished = record(self.study, trial, future)  # RECORD
        self._ran += 1
        self.streak.add(finished)
        for callback in self.callbacks:
            callback(self.study, finished)

    def _interrupt(self) -> None:
        """Stop now: kill what runs, mark it interrupted (within seconds, whatever the objective does)."""
        started = time.monotonic()
        self.executor.cancel()
        mark_interrupted(self.study, list(self._in_flight.values()))
        for trial, future in self._finishing:  # evaluated before the interrupt: their results are real
            try:
                record(self.study, trial, future)
            except Exception:  # the evaluator had broken: it is recorded failed, the interrupt goes on
                log.debug("trial %d: the evaluator had raised", trial.number)
        self._in_flight.clear()
        self._finishing.clear()
        log.info("run interrupted; running trials marked in %.2fs", time.monotonic() - started)

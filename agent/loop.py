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
from agent.errors import BudgetExhausted
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
    ERROR = "error"


@dataclass(frozen=True)
class RunSummary:
    """What one run did and why it stopped."""

    trials_run: int
    stopped_because: StopReason


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
    """Runs trials over an executor until ``n_trials``, a budget, an error or an interrupt stops it."""

    def __init__(
        self,
        study: Study,
        evaluator: Evaluator,
        executor: Executor,
        n_trials: int | None = None,
        account: BudgetAccount | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        self.study = study
        self.evaluator = evaluator
        self.executor = executor
        self.n_trials = n_trials
        self.account = account or BudgetAccount(None)
        self.callbacks = list(callbacks)
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
        except BaseException:
            self._interrupt()
            raise
        self.executor.close()
        if failure is not None:
            raise failure
        assert reason is not None
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

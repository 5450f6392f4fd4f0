"""The executor seam: where the EVALUATE stage of a trial runs.

The loop (:mod:`agent.loop`) proposes, validates, reserves and records in the calling process; an
executor only evaluates. That keeps every stateful part (the proposer, the storage connection, the
budget) in one place, and makes a new place to evaluate — a thread, a process, a Ray cluster — one small
class with two methods.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from concurrent.futures import Future

from agent.trial import Trial
from tools.evaluation import Evaluation, Evaluator


class Executor(ABC):
    """Evaluates trials, up to ``max_workers`` at once.

    Failures of the objective are part of the :class:`Evaluation` (evaluators return them); a future that
    raises means the evaluator itself broke, and the loop fails the trial and stops the run with that error.
    """

    max_workers: int = 1

    @abstractmethod
    def submit(self, evaluator: Evaluator, trial: Trial) -> Future[Evaluation]:
        """Start evaluating ``trial.params``; the future holds the evaluation."""

    @abstractmethod
    def cancel(self) -> None:
        """Stop every evaluation now, leaving no process behind (the run was interrupted)."""

    def close(self) -> None:  # noqa: B027 - most executors hold nothing to release
        """Release workers once no evaluation is running."""

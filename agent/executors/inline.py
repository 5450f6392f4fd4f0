"""Evaluate in the calling thread: the simplest executor, and the one where Ctrl-C reaches the objective."""

from __future__ import annotations

from concurrent.futures import Future

from agent.executors.base import Executor
from agent.trial import Trial
from tools.evaluation import Evaluation, Evaluator
from tools.processes import kill_all


class InlineExecutor(Executor):
    """One trial at a time, evaluated inside :meth:`submit` (the future is done when it returns)."""

    max_workers = 1

    def submit(self, evaluator: Evaluator, trial: Trial) -> Future[Evaluation]:
        future: Future[Evaluation] = Future()
        try:
            future.set_result(evaluator.evaluate(trial.params, trial))
        except Exception as exc:  # the evaluator broke; KeyboardInterrupt goes straight to the loop
            future.set_exception(exc)
        return future

    def cancel(self) -> None:
        kill_all()

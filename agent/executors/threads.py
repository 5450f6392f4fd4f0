"""Evaluate in threads of this process: for objectives that wait (commands, I/O, GPUs, released GIL).

Each evaluation gets a daemon thread, so an objective stuck in Python code cannot keep an interrupted run
from exiting; what it started outside the process is killed by :meth:`ThreadExecutor.cancel`.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future

from agent.executors.base import Executor
from agent.trial import Trial
from tools.evaluation import Evaluation, Evaluator
from tools.processes import kill_all


class ThreadExecutor(Executor):
    """Up to ``max_workers`` evaluations at once, one daemon thread each."""

    def __init__(self, max_workers: int) -> None:
        if max_workers < 1:
            raise ValueError(f"workers must be at least 1, got {max_workers}")
        self.max_workers = max_workers

    def submit(self, evaluator: Evaluator, trial: Trial) -> Future[Evaluation]:
        future: Future[Evaluation] = Future()
        future.set_running_or_notify_cancel()

        def run() -> None:
            try:
                future.set_result(evaluator.evaluate(trial.params, trial))
            except BaseException as exc:  # reported through the future; the loop decides
                future.set_exception(exc)

        threading.Thread(target=run, name=f"tunesmith-trial-{trial.number}", daemon=True).start()
        return future

    def cancel(self) -> None:
        kill_all()

"""Evaluate in worker processes: for CPU-bound Python objectives that hold the GIL.

Workers are spawned (not forked: this process has threads and open database connections) and reused
across trials. The evaluator is pickled to them, so it must be importable: a ``"module:function"``
objective, a module-level function, or a :class:`tools.CommandEvaluator`. On cancel, each worker is
killed with its whole process tree; when the run itself dies (even by ``kill -9``), the kernel kills the
workers (Linux).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
from concurrent.futures import Future, ProcessPoolExecutor

from agent.errors import ConfigError
from agent.executors.base import Executor
from agent.trial import Trial
from tools.evaluation import Evaluation, Evaluator
from tools.processes import die_with_parent, kill_tree


def _evaluate(evaluator: Evaluator, trial: Trial) -> Evaluation:
    return evaluator.evaluate(trial.params, trial)


class ProcessExecutor(Executor):
    """A pool of ``max_workers`` spawned processes."""

    def __init__(self, max_workers: int) -> None:
        if max_workers < 1:
            raise ValueError(f"workers must be at least 1, got {max_workers}")
        self.max_workers = max_workers
        self._pool: ProcessPoolExecutor | None = None

    def submit(self, evaluator: Evaluator, trial: Trial) -> Future[Evaluation]:
        if self._pool is None:
            try:
                pickle.dumps(evaluator)
            except Exception as exc:
                raise ConfigError(
                    f"the objective cannot be sent to a worker process ({type(exc).__name__}: {exc}); with "
                    'executor="processes" use an importable objective ("module:function" or a module-level '
                    'function), or executor="threads"',
                    field="executor",
                ) from None
            # die_with_parent: a run that is kill -9ed takes its workers (and so their trials) with it.
            self._pool = ProcessPoolExecutor(
                self.max_workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=die_with_parent,
                initargs=(os.getpid(),),
            )
        return self._pool.submit(_evaluate, evaluator, trial)

    def cancel(self) -> None:
        if self._pool is None:
            return
        for process in list(getattr(self._pool, "_processes", {}).values()):
            if process.pid is not None:
                kill_tree(process.pid)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

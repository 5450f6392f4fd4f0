"""One benchmark run: a (problem, optimizer, seed) triple, executed in a pool worker.

Workers are spawned (not forked) so that no thread pool or torch state leaks in from the parent, and each
is limited to one thread: with ``--jobs`` workers on ``--jobs`` cores, more threads would only make
methods that use torch (tunesmith-bo, optuna-gp) look slower or faster depending on contention. The one
exception is the local model of the ``*-local`` optimizers: its llama.cpp server (one per worker, started
on first use) runs half the CPUs (at most 4) as threads of its own, so those optimizers are best run with ``--jobs 1``.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.logs import set_verbosity
from agent.space import ParamValue
from evals.optimizers import make_optimizer
from evals.problems import PROBLEMS, Problem

#: Environment variables that cap the BLAS/OpenMP threads of a process; read when those libraries load.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

#: Distinct error messages kept per run: enough to diagnose, not enough to bloat results.json.
MAX_ERRORS_KEPT = 5


@dataclass(frozen=True)
class Job:
    """What one worker call runs."""

    problem: str
    optimizer: str
    seed: int
    trials: int


def init_worker() -> None:
    """Per-process set-up of a pool worker: one torch thread, quiet Optuna.

    The BLAS/OpenMP caps (``THREAD_VARS``) are set by the parent before the pool starts, so that they are
    in the environment before anything in the worker imports torch.
    """
    import optuna
    import torch

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(logging.WARNING)
    set_verbosity(logging.WARNING)


def best_so_far(values: list[float | None]) -> list[float | None]:
    """Running minimum of ``values``; a failed trial (None) is no improvement, None until a success."""
    out: list[float | None] = []
    best: float | None = None
    for value in values:
        if value is not None and (best is None or value < best):
            best = value
        out.append(best)
    return out


def _evaluate(problem: Problem, params: dict[str, ParamValue]) -> float | str:
    """The objective's value, or why it failed (it raised or returned a non-finite number).

    A failed evaluation is data (the optimizer is told and it counts as no improvement), not a crash.
    """
    try:
        value = float(problem.objective(params))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return value if math.isfinite(value) else f"objective returned {value}"


def run_job(job: Job) -> dict[str, Any]:
    """Run ``job.trials`` sequential ask/evaluate/tell steps and return the raw record of the run.

    Returns:
        a JSON-ready dict: the job's fields, per-trial ``values`` (None for failures), ``best_so_far``,
        ``ask_seconds`` (suggestion time), ``eval_seconds``, ``failures``, the first distinct ``errors``
        and ``wall_seconds``; for an optimizer that calls a model, also ``llm`` (its calls, tokens, latency
        and valid-proposal counts, see :func:`evals.model_stats.run_model_stats`).
    """
    problem = PROBLEMS[job.problem]
    values: list[float | None] = []
    ask_seconds: list[float] = []
    eval_seconds: list[float] = []
    errors: list[str] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tunesmith-bench-") as workdir:
        optimizer = make_optimizer(job.optimizer, problem, job.seed, Path(workdir))
        try:
            for _ in range(job.trials):
                t0 = time.perf_counter()
                params = optimizer.ask()
                t1 = time.perf_counter()
                outcome = _evaluate(problem, params)
                eval_seconds.append(time.perf_counter() - t1)
                ask_seconds.append(t1 - t0)
                if isinstance(outcome, str):
                    optimizer.fail(outcome)
                    values.append(None)
                    if outcome not in errors and len(errors) < MAX_ERRORS_KEPT:
                        errors.append(outcome)
                else:
                    optimizer.tell(outcome)
                    values.append(outcome)
            model = getattr(optimizer, "model_stats", None)
            model_record = model() if model is not None else None
        finally:
            optimizer.close()
    record = {
        "problem": job.problem,
        "optimizer": job.optimizer,
        "seed": job.seed,
        "values": values,
        "best_so_far": best_so_far(values),
        "ask_seconds": ask_seconds,
        "eval_seconds": eval_seconds,
        "failures": sum(v is None for v in values),
        "errors": errors,
        "wall_seconds": time.perf_counter() - started,
    }
    if model_record is not None:
        record["llm"] = model_record
    return record

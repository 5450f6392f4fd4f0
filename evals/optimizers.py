"""The compared optimizers, each behind the same small ask/tell adapter and each seeded.

Every adapter is driven one trial at a time (ask, evaluate, tell), so all methods see the same
sequential protocol and the time an ``ask`` takes is the method's suggestion time. Each method keeps its
library defaults: the benchmark measures what a user gets without tuning the tuner.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from agent.space import Categorical, Float, Int, ParamValue, Space
from agent.study import Study, create_study
from agent.trial import Trial
from evals.model_stats import run_model_stats
from evals.problems import Problem


class Optimizer(Protocol):
    """One optimizer on one problem. ``ask`` is always followed by exactly one ``tell`` or ``fail``."""

    def ask(self) -> dict[str, ParamValue]:
        """The next candidate to evaluate."""
        ...

    def tell(self, value: float) -> None:
        """The last candidate's objective value (to minimize)."""
        ...

    def fail(self, error: str) -> None:
        """The last candidate's evaluation raised ``error``."""
        ...

    def close(self) -> None:
        """Release what the optimizer holds (files, threads) once the run is over."""
        ...


class TunesmithOptimizer:
    """A tunesmith study with proposer ``kind`` ("bo", "random", ...) in its own SQLite file.

    Going through the public ``create_study``/``ask``/``tell`` surface means the suggestion time includes
    the storage round trips a user pays for, not only the proposer's arithmetic.
    """

    def __init__(self, kind: str, problem: Problem, seed: int, workdir: Path, model: str | None = None) -> None:
        if model == "local":
            # Fail here, where the harness probes each optimizer, if the model is not installed; nothing starts
            # yet: the in-process server is started by the first proposal, once per worker process.
            from agent.llm.local import bundled_model_path

            bundled_model_path()
        self._space = problem.space
        self._model = model
        self._study: Study = create_study(
            f"{problem.name}-{kind}-{seed}",
            problem.space,
            direction="minimize",
            storage=f"sqlite:///{workdir}/bench.db",
            proposer=kind,
            model=model,
            seed=seed,
        )
        self._trial: Trial | None = None

    def ask(self) -> dict[str, ParamValue]:
        self._trial = self._study.ask()
        return dict(self._trial.params)

    def tell(self, value: float) -> None:
        assert self._trial is not None
        self._study.tell(self._trial, value)

    def fail(self, error: str) -> None:
        assert self._trial is not None
        self._study.tell(self._trial, state="failed", error=error)

    def model_stats(self) -> dict[str, Any] | None:
        """What the model did in this run (see :mod:`evals.model_stats`); None for a study without a model."""
        if self._model is None:
            return None
        return run_model_stats(self._space, self._study.llm_calls, [t.proposer for t in self._study.trials])

    def close(self) -> None:
        # A pool worker runs many studies: stop each one's heartbeat before its file is deleted.
        self._study.close()


def optuna_distributions(space: Space) -> dict[str, BaseDistribution]:
    """The Optuna distributions that search the same values as ``space`` (Text/Code are refused)."""
    out: dict[str, BaseDistribution] = {}
    for name, param in space.items():
        if isinstance(param, Float):
            out[name] = FloatDistribution(param.low, param.high, log=param.log)
        elif isinstance(param, Int):
            out[name] = IntDistribution(param.low, param.high, log=param.log, step=param.step)
        elif isinstance(param, Categorical):
            out[name] = CategoricalDistribution(param.choices)
        else:
            raise ValueError(f"parameter {name!r}: {param.describe()} has no Optuna distribution")
    return out


class OptunaOptimizer:
    """An in-memory Optuna study driven through ``ask(fixed_distributions)`` and ``tell``."""

    def __init__(self, sampler: optuna.samplers.BaseSampler, space: Space) -> None:
        self._study = optuna.create_study(direction="minimize", sampler=sampler)
        self._distributions = optuna_distributions(space)
        self._trial: optuna.Trial | None = None

    def ask(self) -> dict[str, ParamValue]:
        self._trial = self._study.ask(self._distributions)
        return dict(self._trial.params)

    def tell(self, value: float) -> None:
        assert self._trial is not None
        self._study.tell(self._trial, value)

    def fail(self, error: str) -> None:
        assert self._trial is not None
        self._trial.set_user_attr("error", error)
        self._study.tell(self._trial, state=optuna.trial.TrialState.FAIL)

    def close(self) -> None:
        """Nothing to release: the study lives in memory."""


class RandomSearch:
    """Uniform draws on the unit cube decoded through the space: the baseline every score is relative to.

    Independent uniform draws (not Sobol) keep the baseline the textbook one that Bayesmark uses, and
    decoding through ``Space.decode`` gives it the same log scales and integer grids as everyone else.
    """

    def __init__(self, space: Space, seed: int) -> None:
        self._space = space
        self._rng = np.random.default_rng(seed)

    def ask(self) -> dict[str, ParamValue]:
        return self._space.decode(self._rng.random(self._space.n_dims))

    def tell(self, value: float) -> None:
        """Random search ignores results."""

    def fail(self, error: str) -> None:
        """Random search ignores failures."""

    def close(self) -> None:
        """Nothing to release."""


Factory = Callable[[Problem, int, Path], Optimizer]

#: Command-line key -> (report label, factory). ``randomsearch`` is the scoring baseline.
OPTIMIZERS: dict[str, tuple[str, Factory]] = {
    "bo": ("tunesmith-bo", lambda p, seed, workdir: TunesmithOptimizer("bo", p, seed, workdir)),
    "random": ("tunesmith-random", lambda p, seed, workdir: TunesmithOptimizer("random", p, seed, workdir)),
    "tpe": ("optuna-tpe", lambda p, seed, _: OptunaOptimizer(optuna.samplers.TPESampler(seed=seed), p.space)),
    "gp": ("optuna-gp", lambda p, seed, _: OptunaOptimizer(optuna.samplers.GPSampler(seed=seed), p.space)),
    "randomsearch": ("randomsearch", lambda p, seed, _: RandomSearch(p.space, seed)),
    # With the embedded model (SmolLM2-135M on an in-process llama.cpp server, half the CPUs (at most 4) as threads per
    # worker process): run these with --jobs 1 on a small machine, so that workers do not share cores.
    "auto-local": (
        "tunesmith-auto-local",
        lambda p, seed, workdir: TunesmithOptimizer("auto", p, seed, workdir, model="local"),
    ),
    "llm-local": (
        "tunesmith-llm-local",
        lambda p, seed, workdir: TunesmithOptimizer("llm", p, seed, workdir, model="local"),
    ),
}
BASELINE = "randomsearch"

#: Optimizers that call a model: their runs carry a model record, and they are not run unless asked for.
MODEL_OPTIMIZERS = ("auto-local", "llm-local")

#: What ``--optimizers`` defaults to: every optimizer that needs no model.
DEFAULT_OPTIMIZERS = tuple(key for key in OPTIMIZERS if key not in MODEL_OPTIMIZERS)


def local_model_threads() -> int:
    """Threads the in-process llama.cpp server of one worker uses."""
    from agent.llm.local import server_threads

    return server_threads()


def label(key: str) -> str:
    """The report name of an optimizer key (the key itself when unknown, e.g. in an old results file)."""
    return OPTIMIZERS[key][0] if key in OPTIMIZERS else key


def make_optimizer(key: str, problem: Problem, seed: int, workdir: Path) -> Optimizer:
    """Build optimizer ``key`` for one run; ``workdir`` is a private directory the run may write to."""
    return OPTIMIZERS[key][1](problem, seed, workdir)

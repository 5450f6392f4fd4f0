"""A run: failed evaluations are told to the optimizer and count as no improvement, for every adapter."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pytest

from agent.space import Float, ParamValue, Space
from evals import runner
from evals.problems import Problem


def _flaky(params: Mapping[str, ParamValue]) -> float:
    x = float(params["x"])
    if x > 0.5:
        raise RuntimeError("diverged")
    return math.nan if x > 0.4 else x


@pytest.mark.parametrize("optimizer", ["random", "tpe", "gp", "randomsearch"])
def test_failures_are_recorded_and_runs_go_on(optimizer: str, monkeypatch: pytest.MonkeyPatch) -> None:
    problem = Problem("flaky", "synthetic", Space(x=Float(0.0, 1.0)), _flaky, 0.0)
    monkeypatch.setitem(runner.PROBLEMS, "flaky", problem)
    run = runner.run_job(runner.Job("flaky", optimizer, seed=3, trials=15))
    values = run["values"]
    assert len(values) == len(run["ask_seconds"]) == len(run["eval_seconds"]) == 15
    assert run["failures"] == sum(v is None for v in values) > 0
    assert set(run["errors"]) <= {"RuntimeError: diverged", "objective returned nan"}
    successes = [v for v in values if v is not None]
    assert run["best_so_far"][-1] == min(successes)

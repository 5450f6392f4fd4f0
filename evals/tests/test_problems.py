"""The problems: formulas agree with BoTorch, optima are where they are said to be, ML objectives run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from botorch.test_functions import synthetic as botorch_fns

from agent.space import Categorical, Float, Int
from evals.optimizers import optuna_distributions
from evals.problems import PROBLEMS, SUITES, select
from evals.problems.synthetic import mixed

# Our problem name -> the BoTorch function computing the same formula (with its domain).
BOTORCH = {
    "branin": botorch_fns.Branin(),
    "hartmann6": botorch_fns.Hartmann(dim=6),
    "ackley5": botorch_fns.Ackley(dim=5),
    "rosenbrock4": botorch_fns.Rosenbrock(dim=4),
    "levy6": botorch_fns.Levy(dim=6),
    "styblinski_tang4": botorch_fns.StyblinskiTang(dim=4),
}


@pytest.mark.parametrize("name", sorted(BOTORCH))
def test_synthetic_formula_matches_botorch(name: str) -> None:
    problem, reference = PROBLEMS[name], BOTORCH[name]
    rng = np.random.default_rng(0)
    for _ in range(20):
        params = problem.space.decode(rng.random(problem.space.n_dims))
        x = torch.tensor([list(params.values())], dtype=torch.float64)
        expected = float(reference.evaluate_true(x))
        # rel 1e-6, not tighter: BoTorch keeps Hartmann's constants in float32.
        assert problem.objective(params) == pytest.approx(expected, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("name", sorted(BOTORCH))
def test_synthetic_optimum_is_attained_at_the_known_minimizer(name: str) -> None:
    problem, reference = PROBLEMS[name], BOTORCH[name]
    assert problem.optimum == pytest.approx(reference.optimal_value, abs=1e-5)
    for minimizer in reference._optimizers:
        params = dict(zip(problem.space, minimizer, strict=True))
        assert problem.space.problems(params) == [], "the minimizer must lie inside our domain"
        assert problem.objective(params) == pytest.approx(problem.optimum, abs=1e-5)


def test_mixed_optimum_is_zero_at_its_target_and_only_there() -> None:
    best = {"x0": 1.3, "x1": -2.1, "x2": 0.7, "count": 13, "size": 40, "color": "green"}
    space = PROBLEMS["mixed"].space
    assert space.problems(best) == []
    assert mixed(best) == pytest.approx(0.0, abs=1e-12)
    for change in ({"count": 12}, {"size": 41}, {"color": "white"}, {"x1": -2.0}):
        assert mixed({**best, **change}) > 0
    rng = np.random.default_rng(1)
    assert all(mixed(space.decode(rng.random(space.n_dims))) > 0 for _ in range(100))


@pytest.mark.slow  # trains eleven scikit-learn models
@pytest.mark.parametrize("problem", SUITES["ml"], ids=lambda p: p.name)
def test_ml_objective_is_finite_and_deterministic(problem) -> None:
    params = problem.space.decode(np.full(problem.space.n_dims, 0.5))
    value = problem.objective(params)
    assert math.isfinite(value) and value >= 0
    assert problem.objective(params) == value
    assert problem.optimum is None


def test_select_filters_by_suite_and_name() -> None:
    assert [p.name for p in select("synthetic", ["mixed", "branin"])] == ["mixed", "branin"]
    assert len(select("all")) == len(SUITES["synthetic"]) + len(SUITES["ml"])
    with pytest.raises(ValueError, match="svm-breast"):
        select("synthetic", ["svm-breast"])


@pytest.mark.parametrize("problem", list(PROBLEMS.values()), ids=lambda p: p.name)
def test_optuna_distributions_search_the_same_values(problem) -> None:
    distributions = optuna_distributions(problem.space)
    assert list(distributions) == list(problem.space)
    for name, param in problem.space.items():
        dist = distributions[name]
        if isinstance(param, Categorical):
            assert tuple(dist.choices) == param.choices
        else:
            assert isinstance(param, Float | Int)
            assert (dist.low, dist.high, dist.log) == (param.low, param.high, param.log)
            if isinstance(param, Int):
                assert dist.step == param.step

"""BoTorch GP-BO: finds optima, handles pending points, and never breaks the loop on odd data."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from agent import Categorical, Float, Int, Space, create_study
from agent.proposers import StudyView
from agent.proposers.bo import BOProposer, initial_design_size, training_data
from tests.proposers.conftest import MIXED_SPACE, make_trials, trials_at

BRANIN_OPTIMUM = 0.397887


def branin(p: dict) -> float:
    x1, x2 = p["x1"], p["x2"]
    b, c = 5.1 / (4 * math.pi**2), 5 / math.pi
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10


@pytest.mark.slow
def test_finds_the_branin_optimum_in_30_trials(tmp_path) -> None:
    space = Space(x1=Float(-5, 10), x2=Float(0, 15))
    hits = 0
    for seed in range(5):
        study = create_study(f"branin-{seed}", space, storage=f"sqlite:///{tmp_path}/b.db", proposer="bo", seed=seed)
        study.optimize(branin, n_trials=30)
        hits += study.best_value - BRANIN_OPTIMUM <= 0.5
        assert {t.proposer for t in study.trials} == {"bo"}
    assert hits >= 4


@pytest.mark.slow
def test_a_batch_avoids_pending_points_and_itself() -> None:
    view = StudyView(MIXED_SPACE, "minimize", make_trials(MIXED_SPACE, [float(i) for i in range(12)]), seed=0)
    proposer = BOProposer(seed=0)
    pending = [p.params for p in proposer.propose(view, 2, [])]
    batch = proposer.propose(view, 4, pending)
    keys = [MIXED_SPACE.key(p.params) for p in batch]
    assert len(batch) == 4 and len(set(keys)) == 4
    assert not set(keys) & {MIXED_SPACE.key(p) for p in pending}
    assert all(p.rationale and "qLogNEI" in p.rationale for p in batch)


ROBUSTNESS = {
    "constant values": (MIXED_SPACE, [2.0] * 12),
    "single feasible trial": (MIXED_SPACE, [None] * 11 + [1.0]),
    "all failed": (MIXED_SPACE, [None] * 12),
    "one dimension": (Space(x=Float(0, 1)), [float(i % 3) for i in range(8)]),
    "thirty dimensions": (Space({f"x{i}": Float(-1, 1) for i in range(30)}), [float(i) for i in range(12)]),
    "categorical only": (
        Space(a=Categorical(["p", "q", "r"]), b=Categorical([1, 2]), c=Categorical([True, False])),
        [float(i) for i in range(6)],
    ),
    "integers only, large": (Space(a=Int(1, 1000), b=Int(1, 1000, log=True)), [float(i) for i in range(8)]),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(ROBUSTNESS))
def test_robust_on_odd_histories(case: str, caplog: pytest.LogCaptureFixture) -> None:
    space, values = ROBUSTNESS[case]
    trials = make_trials(space, values, seed=1)
    view = StudyView(space, "minimize", trials, seed=0)
    pending = [make_trials(space, [0.0], seed=9)[0].params]
    with caplog.at_level(logging.WARNING):
        proposals = BOProposer(seed=0).propose(view, 3, pending)
    assert len(proposals) == 3
    assert all(space.problems(p.params) == [] for p in proposals)
    seen = {space.key(t.params) for t in trials} | {space.key(pending[0])}
    assert len({space.key(p.params) for p in proposals} - seen) == 3


def test_duplicate_observations_do_not_break_the_fit() -> None:
    space = Space(x=Float(0, 1), y=Float(0, 1))
    points = [{"x": 0.5, "y": 0.5}] * 6 + [{"x": 0.1 * i, "y": 0.2} for i in range(6)]
    values = [1.0, 1.1, 0.9, 1.0, 1.05, 0.95] + [float(i) for i in range(6)]
    view = StudyView(space, "minimize", trials_at(space, points, values), seed=0)
    [proposal] = BOProposer(seed=0).propose(view, 1, [])
    assert proposal.rationale and proposal.rationale.startswith("GP-BO")


def test_categorical_only_space_is_scored_exhaustively_and_exhausts_cleanly() -> None:
    space = Space(a=Categorical(["p", "q"]), b=Categorical([1, 2]))
    grid = [{"a": a, "b": b} for a in ("p", "q") for b in (1, 2)]
    view = StudyView(space, "maximize", trials_at(space, grid[:3], [1.0, 2.0, 3.0]), seed=0)
    [only] = BOProposer(seed=0).propose(view, 1, [])
    assert only.params == grid[3]
    full = StudyView(space, "maximize", trials_at(space, grid, [1.0, 2.0, 3.0, 4.0]), seed=0)
    again = BOProposer(seed=0).propose(full, 2, [])
    assert len(again) == 2 and all(space.problems(p.params) == [] for p in again)


def test_failed_trials_are_imputed_with_the_worst_value() -> None:
    space = Space(x=Float(0, 1))
    points = [{"x": v} for v in (0.1, 0.2, 0.3)]
    view = StudyView(space, "minimize", trials_at(space, points, [1.0, None, 3.0]), seed=0)
    x, y = training_data(view)
    assert x.shape == (3, 1) and y.squeeze().tolist() == [-1.0, -3.0, -3.0]


def test_initial_design_is_sized_to_the_dimension() -> None:
    assert initial_design_size(Space(x=Float(0, 1))) == 4
    assert initial_design_size(Space({f"x{i}": Float(0, 1) for i in range(6)})) == 7
    assert initial_design_size(Space({f"x{i}": Float(0, 1) for i in range(30)})) == 10
    view = StudyView(MIXED_SPACE, "minimize", make_trials(MIXED_SPACE, [1.0, 2.0]), seed=0)
    assert all(p.rationale == "initial Sobol design" for p in BOProposer(0).propose(view, 2, []))


@pytest.mark.slow
def test_log_and_integer_parameters_are_proposed_validly(tmp_path) -> None:
    space = Space(lr=Float(1e-5, 1.0, log=True), layers=Int(1, 64, log=True), c=Categorical(["a", "b"]))

    def objective(p: dict) -> float:
        return (np.log10(p["lr"]) + 3) ** 2 + (np.log2(p["layers"]) - 3) ** 2 + (p["c"] == "b")

    near_optimum = 0
    for seed in range(3):
        study = create_study(f"mixed-{seed}", space, storage=f"sqlite:///{tmp_path}/m.db", proposer="bo", seed=seed)
        study.optimize(objective, n_trials=25)
        assert all(space.problems(t.params) == [] for t in study.trials)
        near_optimum += study.best_value < 0.6
    assert near_optimum >= 2

"""Fixtures shared by every proposer's tests: each proposer must pass the same contract."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pytest

from agent.proposers import Proposer, make_proposer
from agent.space import Categorical, Float, Int, Space, Text
from agent.trial import Trial, TrialState

#: Every proposer kind listed here is run through tests/proposers/test_contract.py.
CONTRACT_KINDS = ["random", "bo"]

MIXED_SPACE = Space(
    x=Float(-5.0, 10.0),
    lr=Float(1e-4, 1.0, log=True),
    n=Int(1, 20),
    color=Categorical(["red", "green", "blue"]),
    note=Text("keep me"),
)


def trials_at(space: Space, points: list[dict], values: list[float | None]) -> list[Trial]:
    """Finished trials at ``points``; a None value makes a failed trial."""
    return [
        Trial(
            number=i,
            params=p,
            state=TrialState.COMPLETE if v is not None else TrialState.FAILED,
            proposer="test",
            started_at=datetime.now(UTC),
            value=v,
            error=None if v is not None else "boom",
        )
        for i, (p, v) in enumerate(zip(points, values, strict=True))
    ]


def make_trials(space: Space, values: list[float | None], seed: int = 0) -> list[Trial]:
    """Finished trials at random points; a None value makes a failed trial."""
    rng = np.random.default_rng(seed)
    return trials_at(space, [space.decode(rng.random(space.n_dims)) for _ in values], values)


@pytest.fixture(params=CONTRACT_KINDS)
def proposer_factory(request: pytest.FixtureRequest) -> Callable[[int | None], Proposer]:
    return lambda seed: make_proposer(request.param, seed)

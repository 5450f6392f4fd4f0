"""The proposer contract: what the study may rely on, whichever proposer it uses."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from agent.proposers import Proposer, StudyView
from agent.space import Categorical, Space
from tests.proposers.conftest import MIXED_SPACE, make_trials

Factory = Callable[[int | None], Proposer]


def keys(space: Space, candidates: list) -> list:
    return [space.key(c) for c in candidates]


@pytest.mark.parametrize("n_history", [0, 3, 12])
@pytest.mark.parametrize("n", [1, 4])
def test_returns_n_valid_distinct_proposals(proposer_factory: Factory, n_history: int, n: int) -> None:
    values = [float(i % 5) if i % 4 else None for i in range(n_history)]
    view = StudyView(MIXED_SPACE, "minimize", make_trials(MIXED_SPACE, values), seed=3)
    proposer = proposer_factory(3)
    proposals = proposer.propose(view, n, [])
    assert len(proposals) == n
    for p in proposals:
        assert MIXED_SPACE.problems(p.params) == []
        assert p.proposer == proposer.name
    params = [p.params for p in proposals]
    past = set(keys(MIXED_SPACE, [t.params for t in view.trials]))
    assert len(set(keys(MIXED_SPACE, params))) == n
    assert not past & set(keys(MIXED_SPACE, params))


def test_respects_pending_points(proposer_factory: Factory) -> None:
    view = StudyView(MIXED_SPACE, "minimize", make_trials(MIXED_SPACE, [1.0, 2.0, 0.5, 3.0, 2.5, 1.5]), seed=1)
    proposer = proposer_factory(1)
    pending = [p.params for p in proposer.propose(view, 3, [])]
    fresh = proposer.propose(view, 4, pending)
    assert not set(keys(MIXED_SPACE, pending)) & set(keys(MIXED_SPACE, [p.params for p in fresh]))


def test_deterministic_under_a_seed(proposer_factory: Factory) -> None:
    view = StudyView(MIXED_SPACE, "maximize", make_trials(MIXED_SPACE, [1.0, None, 0.5, 3.0, 2.0]), seed=7)
    first = [p.params for p in proposer_factory(7).propose(view, 3, [])]
    again = [p.params for p in proposer_factory(7).propose(view, 3, [])]
    assert first == again


def test_text_parameters_are_carried_along(proposer_factory: Factory) -> None:
    view = StudyView(MIXED_SPACE, "minimize", [], seed=0)
    for p in proposer_factory(0).propose(view, 2, []):
        assert p.params["note"] == "keep me"


def test_small_discrete_space_is_exhausted_before_repeating(proposer_factory: Factory) -> None:
    space = Space(c=Categorical(["a", "b", "c"]))
    view = StudyView(space, "minimize", [], seed=0)
    proposals = proposer_factory(0).propose(view, 3, [])
    assert sorted(p.params["c"] for p in proposals) == ["a", "b", "c"]
    # Once nothing new is left the proposer still answers, with valid repeats.
    full = StudyView(space, "minimize", make_trials(space, [1.0, 2.0, 3.0]), seed=0)
    more = proposer_factory(0).propose(full, 2, [p.params for p in proposals])
    assert len(more) == 2 and all(space.problems(p.params) == [] for p in more)

"""The proposer contract: what the study relies on, whichever proposer it uses.

Subclass :class:`ProposerContract` and implement :meth:`ProposerContract.make_proposer`; pytest collects
the subclass (name it ``Test...``) and runs every rule below against your proposer::

    from agent.testing.proposers import ProposerContract

    class TestAnneal(ProposerContract):
        def make_proposer(self, seed: int | None) -> Proposer:
            return make_proposer("anneal", {}, ProposerContext(seed=seed))

Set ``proposes_text = True`` for a proposer that proposes Text/Code values itself (a model) rather than
carrying them along, and ``other_names`` to the names its proposals may carry besides its own (a
portfolio's arms, a partner that fills a shortfall). The helpers :data:`MIXED_SPACE`, :func:`make_trials`
and :func:`trials_at` build histories for a proposer's own tests too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import numpy as np
import pytest

from agent.proposers.base import Proposer, StudyView
from agent.space import Categorical, Float, Int, ParamValue, Space, Text
from agent.trial import Trial, TrialState

__all__ = ["MIXED_SPACE", "ProposerContract", "make_trials", "trials_at"]

#: Floats (one log-scaled), an integer, a categorical and a text parameter.
MIXED_SPACE = Space(
    x=Float(-5.0, 10.0),
    lr=Float(1e-4, 1.0, log=True),
    n=Int(1, 20),
    color=Categorical(["red", "green", "blue"]),
    note=Text("keep me"),
)


def trials_at(space: Space, points: Sequence[Mapping[str, ParamValue]], values: Sequence[float | None]) -> list[Trial]:
    """Finished trials at ``points``; a None value makes a failed trial."""
    return [
        Trial(
            number=i,
            params=dict(p),
            state=TrialState.COMPLETE if v is not None else TrialState.FAILED,
            proposer="test",
            started_at=datetime.now(UTC),
            value=v,
            error=None if v is not None else "boom",
        )
        for i, (p, v) in enumerate(zip(points, values, strict=True))
    ]


def make_trials(space: Space, values: Sequence[float | None], seed: int = 0) -> list[Trial]:
    """Finished trials at random points of ``space``; a None value makes a failed trial."""
    rng = np.random.default_rng(seed)
    return trials_at(space, [space.decode(rng.random(space.n_dims)) for _ in values], values)


def _keys(space: Space, candidates: Sequence[Mapping[str, ParamValue]]) -> list[tuple[object, ...]]:
    return [space.key(c) for c in candidates]


class ProposerContract:
    """The rules every proposer keeps. Subclasses implement :meth:`make_proposer`."""

    #: True when the proposer chooses Text/Code values (a model); False when it carries them along.
    proposes_text = False
    #: Names a proposal may carry besides the proposer's own: a portfolio's arms, a partner that fills in.
    other_names: tuple[str, ...] = ()

    def make_proposer(self, seed: int | None) -> Proposer:
        """A fresh proposer seeded with ``seed``; two calls with one seed must propose alike."""
        raise NotImplementedError

    @pytest.mark.parametrize("n_history", [0, 3, 12])
    @pytest.mark.parametrize("n", [1, 4])
    def test_returns_n_valid_distinct_new_proposals(self, n_history: int, n: int) -> None:
        values = [float(i % 5) if i % 4 else None for i in range(n_history)]
        view = StudyView(MIXED_SPACE, "minimize", make_trials(MIXED_SPACE, values), seed=3)
        proposer = self.make_proposer(3)
        proposals = proposer.propose(view, n, [])
        assert len(proposals) == n
        for p in proposals:
            assert MIXED_SPACE.problems(p.params) == []
            assert p.proposer in (proposer.name, *self.other_names)
        params = [p.params for p in proposals]
        past = set(_keys(MIXED_SPACE, [t.params for t in view.trials]))
        assert len(set(_keys(MIXED_SPACE, params))) == n
        assert not past & set(_keys(MIXED_SPACE, params))

    def test_proposals_name_the_proposer(self) -> None:
        proposer = self.make_proposer(0)
        assert isinstance(proposer, Proposer)
        assert isinstance(proposer.name, str) and proposer.name
        view = StudyView(MIXED_SPACE, "minimize", make_trials(MIXED_SPACE, [1.0, 2.0]), seed=0)
        assert all(p.proposer in (proposer.name, *self.other_names) for p in proposer.propose(view, 2, []))

    def test_respects_pending_points(self) -> None:
        view = StudyView(MIXED_SPACE, "minimize", make_trials(MIXED_SPACE, [1.0, 2.0, 0.5, 3.0, 2.5, 1.5]), seed=1)
        proposer = self.make_proposer(1)
        pending = [p.params for p in proposer.propose(view, 3, [])]
        fresh = proposer.propose(view, 4, pending)
        assert len(fresh) == 4
        assert not set(_keys(MIXED_SPACE, pending)) & set(_keys(MIXED_SPACE, [p.params for p in fresh]))

    def test_deterministic_under_a_seed(self) -> None:
        view = StudyView(MIXED_SPACE, "maximize", make_trials(MIXED_SPACE, [1.0, None, 0.5, 3.0, 2.0]), seed=7)
        first = [p.params for p in self.make_proposer(7).propose(view, 3, [])]
        again = [p.params for p in self.make_proposer(7).propose(view, 3, [])]
        assert first == again

    def test_text_parameters(self) -> None:
        view = StudyView(MIXED_SPACE, "minimize", [], seed=0)
        for p in self.make_proposer(0).propose(view, 2, []):
            if self.proposes_text:
                assert isinstance(p.params["note"], str)
            else:
                assert p.params["note"] == "keep me", "Text values are carried along, not invented"

    def test_only_text_parameters(self) -> None:
        space = Space(prompt=Text("Answer briefly.", max_length=200))
        view = StudyView(space, "minimize", [], seed=0)
        proposals = self.make_proposer(0).propose(view, 2, [])
        assert len(proposals) == 2 and all(space.problems(p.params) == [] for p in proposals)

    def test_small_discrete_space_is_exhausted_before_repeating(self) -> None:
        space = Space(c=Categorical(["a", "b", "c"]))
        view = StudyView(space, "minimize", [], seed=0)
        proposals = self.make_proposer(0).propose(view, 3, [])
        assert sorted(str(p.params["c"]) for p in proposals) == ["a", "b", "c"]
        # Once nothing new is left the proposer still answers, with valid repeats.
        full = StudyView(space, "minimize", make_trials(space, [1.0, 2.0, 3.0]), seed=0)
        more = self.make_proposer(0).propose(full, 2, [p.params for p in proposals])
        assert len(more) == 2 and all(space.problems(p.params) == [] for p in more)

    def test_a_history_of_failures_only(self) -> None:
        view = StudyView(MIXED_SPACE, "minimize", make_trials(MIXED_SPACE, [None] * 8), seed=2)
        proposals = self.make_proposer(2).propose(view, 2, [])
        assert len(proposals) == 2 and all(MIXED_SPACE.problems(p.params) == [] for p in proposals)

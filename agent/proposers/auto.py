"""The default portfolio: the model and BO share the work, in proportion to what each achieves.

Order of business, following DESIGN.md section 5 and the literature notes (a model helps most early,
and seeding a sensible default accounts for much of that):

1. enqueued points (the user's defaults) are taken by the study before any proposer is asked;
2. with a model, its zero-shot batch (``zero_shot`` candidates) comes first;
3. then every proposal goes to an arm drawn by Thompson sampling: each arm's Beta posterior counts the
   trials that improved the incumbent of their time as successes, the others as failures.

Without a model this is plain BO. The draw is seeded by the study's seed and history, so a run is
reproducible; every trial records the arm that made it, so ``status`` can show the mix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from agent.proposers.base import Proposer, StudyView
from agent.space import ParamValue
from agent.trial import Proposal


def improvement_counts(view: StudyView, arms: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Per arm: (trials that improved the incumbent of their time, trials that did not)."""
    counts = view.improvements()
    return {arm: counts.get(arm, (0, 0)) for arm in arms}


class AutoProposer:
    """Portfolio of ``llm`` (optional) and ``bo``; see the module docstring."""

    name = "auto"

    def __init__(self, bo: Proposer, llm: Proposer | None = None, seed: int | None = None, zero_shot: int = 4) -> None:
        self.bo = bo
        self.llm = llm
        self.seed = seed
        self.zero_shot = zero_shot

    def propose(self, view: StudyView, n: int, pending: Sequence[Mapping[str, ParamValue]]) -> list[Proposal]:
        if self.llm is None:
            return self.bo.propose(view, n, pending)
        from_llm = sum(t.proposer == self.llm.name for t in view.trials)
        wanted_llm = min(n, max(0, self.zero_shot - from_llm)) if from_llm < self.zero_shot else self._draw(view, n)
        chosen: list[Proposal] = []
        if wanted_llm:
            chosen += self.llm.propose(view, wanted_llm, pending)
        if len(chosen) < n:
            chosen += self.bo.propose(view, n - len(chosen), [*pending, *(p.params for p in chosen)])
        return chosen

    def _draw(self, view: StudyView, n: int) -> int:
        """How many of ``n`` proposals go to the model, by Thompson sampling."""
        assert self.llm is not None
        counts = improvement_counts(view, [self.llm.name, self.bo.name])
        rng = np.random.default_rng(None if self.seed is None else [self.seed, len(view.trials)])
        wins = 0
        for _ in range(n):
            samples = {arm: rng.beta(1 + s, 1 + f) for arm, (s, f) in counts.items()}
            wins += samples[self.llm.name] > samples[self.bo.name]
        return wins

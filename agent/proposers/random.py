"""Scrambled-Sobol random search: the baseline, the initial design, and the last-resort fallback.

Sobol points cover the unit cube more evenly than independent uniform draws, so a handful of them is a
better first look at a space. The sequence is seeded by the study's seed and fast-forwarded past the
points already used, so the same history gives the same proposals.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import qmc

from agent.proposers.base import SeenPoints, StudyView
from agent.proposers.registry import PROPOSERS, ProposerContext
from agent.registry import Options
from agent.space import ParamValue
from agent.trial import Proposal


class RandomProposer:
    """Proposes decoded scrambled-Sobol points, skipping duplicates of past and pending candidates."""

    name = "random"

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def propose(self, view: StudyView, n: int, pending: Sequence[Mapping[str, ParamValue]]) -> list[Proposal]:
        space = view.space
        text = view.text_values()
        if space.n_dims == 0:  # only Text/Code: nothing for random search to vary
            return [Proposal(space.decode(np.empty(0), text), self.name, "defaults") for _ in range(n)]
        seed = self.seed if self.seed is not None else view.seed
        sobol = qmc.Sobol(space.n_dims, scramble=True, seed=seed)
        used = len(view.trials) + len(pending)
        if used:  # scipy refuses fast_forward(0)
            sobol.fast_forward(used)
        seen = SeenPoints.of(view, pending)
        chosen: list[dict[str, ParamValue]] = []
        spares: list[dict[str, ParamValue]] = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # Sobol's "n is not a power of 2" advice
            for _ in range(8):  # a few rounds; small discrete spaces may simply be exhausted
                for x in sobol.random(max(4 * n, 16)):
                    candidate = space.decode(x, text)
                    (chosen if seen.add(candidate) else spares).append(candidate)
                    if len(chosen) == n:
                        break
                if len(chosen) == n:
                    break
        chosen.extend(spares[: n - len(chosen)])  # repeats only once nothing new is left
        return [Proposal(c, self.name, "Sobol sample") for c in chosen]


class RandomOptions(Options):
    """``random`` takes no options: the seed comes from the study."""


@PROPOSERS.register("random", options=RandomOptions)
def _random(options: RandomOptions, context: ProposerContext) -> RandomProposer:
    return RandomProposer(context.seed)

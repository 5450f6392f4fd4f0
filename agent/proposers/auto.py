"""The default portfolio: the model and BO share the work, in proportion to what each achieves.

Order of business (a model helps most early, and seeding a sensible default accounts for much of that):

1. enqueued points (the user's defaults) are taken by the study before any proposer is asked;
2. with a model, its zero-shot batch (``zero_shot`` candidates) comes first;
3. then every proposal goes to an arm drawn by Thompson sampling: each arm's Beta posterior counts the
   trials that improved the incumbent of their time as successes, the others as failures.

Without a model this is plain BO. The draw is seeded by the study's seed and history, so a run is
reproducible; every trial records the arm that made it, so ``status`` can show the mix.

The ``llm`` kind is registered here too, beside ``auto``: both pair the model with a BO partner, built
from the same options, and :mod:`agent.proposers.llm` stays the algorithm alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from pydantic import Field

from agent.errors import ConfigError
from agent.proposers.base import Proposer, StudyView
from agent.proposers.bo import BOOptions, bo_from_options
from agent.proposers.registry import PROPOSERS, ProposerContext
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


class LLMOptions(BOOptions):
    """Options of ``llm`` (and of the model arm of ``auto``); ``num_restarts``/``raw_samples`` tune the BO partner."""

    batch_size: int = Field(default=4, ge=1, le=64, description="candidates asked of the model per call")
    history_tokens: int = Field(default=1500, ge=0, description="prompt tokens for the history of trials")
    temperature: float = Field(default=0.7, ge=0.0, le=2.0, description="the model's sampling temperature")


class AutoOptions(LLMOptions):
    """Options of ``auto``: those of ``llm`` plus the size of the model's zero-shot opening."""

    zero_shot: int = Field(default=4, ge=0, description="proposals the model makes before the bandit decides")


def _model_proposer(options: LLMOptions, context: ProposerContext, partner: Proposer) -> Proposer:
    if context.gateway is None:
        error = ConfigError('proposer "llm" needs a model, e.g. model="local"')
        error.field = "model"
        raise error
    from agent.proposers.llm import LLMProposer

    return LLMProposer(
        context.gateway,
        partner,
        batch_size=options.batch_size,
        history_tokens=options.history_tokens,
        temperature=options.temperature,
        metric=context.metric,
    )


@PROPOSERS.register("llm", options=LLMOptions, needs_model=True, uses_model=True)
def _llm(options: LLMOptions, context: ProposerContext) -> Proposer:
    return _model_proposer(options, context, bo_from_options(options, context))


@PROPOSERS.register("auto", options=AutoOptions, uses_model=True)
def _auto(options: AutoOptions, context: ProposerContext) -> AutoProposer:
    bo = bo_from_options(options, context)
    model = None if context.gateway is None else _model_proposer(options, context, bo)
    return AutoProposer(bo, model, context.seed, zero_shot=options.zero_shot)

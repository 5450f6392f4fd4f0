"""Proposers: where candidates come from (the PROPOSE stage of the loop)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.proposers.base import Proposer, SeenPoints, StudyView
from agent.proposers.random import RandomProposer

if TYPE_CHECKING:
    from agent.llm.client import LLMClient
    from agent.proposers.llm import Recorder

#: The proposer kinds a study or job file may name.
PROPOSER_KINDS = ("auto", "llm", "bo", "random")


def make_proposer(
    kind: str,
    seed: int | None = None,
    llm: LLMClient | None = None,
    recorder: Recorder | None = None,
    metric: str | None = None,
) -> Proposer:
    """Build the proposer a study names.

    Args:
        kind: "auto" (model + BO portfolio; plain BO without a model), "llm", "bo" or "random".
        seed: for reproducible proposals.
        llm: the model, for "auto" and "llm".
        recorder: stores each model call and returns its id (the study's storage).
        metric: the target's name, shown to the model.
    """
    if kind == "random":
        return RandomProposer(seed)
    if kind not in PROPOSER_KINDS:
        raise ValueError(f"unknown proposer {kind!r}; expected one of {', '.join(PROPOSER_KINDS)}")
    from agent.proposers.bo import BOProposer  # torch and BoTorch load only when BO is used

    bo = BOProposer(seed)
    if kind == "bo":
        return bo
    model = None
    if llm is not None:
        from agent.proposers.llm import LLMProposer

        model = LLMProposer(llm, bo, recorder or (lambda call: 0), metric=metric)
    if kind == "llm":
        if model is None:
            raise ValueError('proposer "llm" needs a model, e.g. model="local"')
        return model
    from agent.proposers.auto import AutoProposer

    return AutoProposer(bo, model, seed)


__all__ = ["PROPOSER_KINDS", "Proposer", "RandomProposer", "SeenPoints", "StudyView", "make_proposer"]

"""Proposers: where candidates come from (the PROPOSE stage of the loop)."""

from __future__ import annotations

from agent.proposers.base import Proposer, SeenPoints, StudyView
from agent.proposers.random import RandomProposer

#: The proposer kinds a study or job file may name.
PROPOSER_KINDS = ("random", "bo")


def make_proposer(kind: str, seed: int | None = None) -> Proposer:
    """Build the proposer a study names (``"random"`` or ``"bo"``)."""
    if kind == "random":
        return RandomProposer(seed)
    if kind == "bo":
        from agent.proposers.bo import BOProposer  # torch and BoTorch load only when BO is used

        return BOProposer(seed)
    raise ValueError(f"unknown proposer {kind!r}; expected one of {', '.join(PROPOSER_KINDS)}")


__all__ = ["PROPOSER_KINDS", "Proposer", "RandomProposer", "SeenPoints", "StudyView", "make_proposer"]

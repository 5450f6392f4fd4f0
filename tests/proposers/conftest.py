"""Fixtures shared by the proposer tests; the histories come from the contract module, to stay one definition."""

from __future__ import annotations

from agent.testing.proposers import MIXED_SPACE, make_trials, trials_at

__all__ = ["MIXED_SPACE", "make_trials", "trials_at"]

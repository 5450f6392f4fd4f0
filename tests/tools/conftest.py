"""Fixtures shared by the evaluator tests."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agent.trial import Trial, TrialState


def make_trial(number: int = 0, params: dict[str, object] | None = None) -> Trial:
    """A running trial, as the study hands it to an evaluator."""
    return Trial(
        number=number,
        params=dict(params or {}),
        state=TrialState.RUNNING,
        proposer="test",
        started_at=datetime.now(UTC),
    )


@pytest.fixture
def trial() -> Trial:
    return make_trial(7)

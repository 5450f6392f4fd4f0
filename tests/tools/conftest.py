"""Fixtures shared by the evaluator tests."""

from __future__ import annotations

import pytest

from agent.testing.evaluators import running_trial
from agent.trial import Trial

#: A running trial, as the study hands it to an evaluator.
make_trial = running_trial


@pytest.fixture
def trial() -> Trial:
    return make_trial(7)

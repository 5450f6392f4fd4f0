"""Fixtures shared by the evaluator tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from agent.testing.evaluators import running_trial
from agent.trial import Trial

#: A running trial, as the study hands it to an evaluator.
make_trial = running_trial


@pytest.fixture
def trial() -> Trial:
    return make_trial(7)


@pytest.fixture
def clean_imports() -> Iterator[None]:
    """Undo what resolve_callable does to sys.path and sys.modules (it imports user modules)."""
    path, modules = list(sys.path), set(sys.modules)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        del sys.modules[name]

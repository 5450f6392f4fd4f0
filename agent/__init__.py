"""tunesmith: an optimizer agent. A language model reads the search history and proposes what to try next;
Bayesian optimization is its partner and fallback.

The public API is what ``__all__`` lists; everything else may change between releases. Names are loaded
on first use (PEP 562), so that ``import agent`` (and ``tunesmith --help``) does not pay for numpy,
SQLAlchemy or torch until they are needed.

Importing the package also lets it speak when the application never configured :mod:`logging`: finished
trials and long waits are logged at INFO, to stderr by a fallback handler (see :mod:`agent.logs`;
``agent.set_verbosity(logging.WARNING)`` silences them).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from agent import logs

logs.install()

__version__ = "0.1.0"

_EXPORTS = {
    "Budget": "agent.budget",
    "BudgetExhausted": "agent.errors",
    "ConfigError": "agent.errors",
    "RepeatedFailure": "agent.errors",
    "TunesmithError": "agent.errors",
    "Executor": "agent.executors",
    "set_verbosity": "agent.logs",
    "RunSummary": "agent.loop",
    "StopReason": "agent.loop",
    "InMemoryStorage": "agent.storage",
    "SQLStorage": "agent.storage",
    "open_storage": "agent.storage",
    "Categorical": "agent.space",
    "Code": "agent.space",
    "Float": "agent.space",
    "Int": "agent.space",
    "InvalidCandidate": "agent.space",
    "Space": "agent.space",
    "SpaceError": "agent.space",
    "Text": "agent.space",
    "Storage": "agent.storage",
    "StorageError": "agent.storage",
    "Study": "agent.study",
    "create_study": "agent.study",
    "load_study": "agent.study",
    "Proposal": "agent.trial",
    "Trial": "agent.trial",
    "TrialState": "agent.trial",
}

__all__ = [
    "Budget",
    "BudgetExhausted",
    "Categorical",
    "Code",
    "ConfigError",
    "Executor",
    "Float",
    "InMemoryStorage",
    "Int",
    "InvalidCandidate",
    "Proposal",
    "RepeatedFailure",
    "RunSummary",
    "SQLStorage",
    "Space",
    "SpaceError",
    "StopReason",
    "Storage",
    "StorageError",
    "Study",
    "Text",
    "Trial",
    "TrialState",
    "TunesmithError",
    "__version__",
    "create_study",
    "load_study",
    "open_storage",
    "set_verbosity",
]

if TYPE_CHECKING:
    from agent.budget import Budget
    from agent.errors import BudgetExhausted, ConfigError, RepeatedFailure, TunesmithError
    from agent.executors import Executor
    from agent.logs import set_verbosity
    from agent.loop import RunSummary, StopReason
    from agent.space import Categorical, Code, Float, Int, InvalidCandidate, Space, SpaceError, Text
    from agent.storage import InMemoryStorage, SQLStorage, Storage, StorageError, open_storage
    from agent.study import Study, create_study, load_study
    from agent.trial import Proposal, Trial, TrialState


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agent' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

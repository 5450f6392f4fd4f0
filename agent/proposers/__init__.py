"""Proposers: where candidates come from (the PROPOSE stage of the loop).

Kinds are looked up in :data:`PROPOSERS` (see :mod:`agent.proposers.registry` for adding one); importing
this package registers the built-in ``random``, ``bo``, ``llm``, ``auto``, ``evolve`` and ``prompt``.
"""

from __future__ import annotations

from agent.proposers import auto as _auto  # noqa: F401 - registers "llm" and "auto"
from agent.proposers import bo as _bo  # noqa: F401 - registers "bo"
from agent.proposers import evolve as _evolve  # noqa: F401 - registers "evolve"
from agent.proposers import prompt as _prompt  # noqa: F401 - registers "prompt"
from agent.proposers.base import Proposer, SeenPoints, StudyView
from agent.proposers.random import RandomProposer
from agent.proposers.registry import (
    PROPOSERS,
    ProposerContext,
    make_proposer,
    needs_model,
    space_problem,
    uses_model,
)

#: The built-in proposer kinds (``PROPOSERS.names()`` includes those registered since).
PROPOSER_KINDS = PROPOSERS.names()

__all__ = [
    "PROPOSERS",
    "PROPOSER_KINDS",
    "Proposer",
    "ProposerContext",
    "RandomProposer",
    "SeenPoints",
    "StudyView",
    "make_proposer",
    "needs_model",
    "space_problem",
    "uses_model",
]

"""The proposer registry: the kinds a study may name, each with the options it accepts.

A proposer kind is a factory ``(options, context) -> Proposer`` and a pydantic options model (see
:class:`agent.registry.Options`). The built-in kinds register themselves beside their code (``random`` in
:mod:`agent.proposers.random`, ``bo`` in :mod:`agent.proposers.bo`, ``llm`` and ``auto`` in
:mod:`agent.proposers.auto`); a new one does the same::

    from agent.proposers import PROPOSERS, ProposerContext
    from agent.registry import Options

    class AnnealOptions(Options):
        start_temperature: float = 1.0

    @PROPOSERS.register("anneal", options=AnnealOptions)
    def anneal(options: AnnealOptions, context: ProposerContext) -> Proposer:
        return AnnealProposer(context.seed, options.start_temperature)

after which ``create_study(..., proposer="anneal", proposer_options={"start_temperature": 2.0})`` and a job
file's ``[proposer]`` table (``kind = "anneal"``, ``start_temperature = 2.0``) both work, with the option
checked by ``AnnealOptions``. Test it with :class:`agent.testing.proposers.ProposerContract`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from agent.proposers.base import Proposer
from agent.registry import Registry

if TYPE_CHECKING:
    from agent.llm.gateway import ModelGateway
    from agent.space import Space

#: Proposer kinds by name. Entry ``meta``: ``uses_model=True`` for kinds that use a model when the study has
#: one (the study then builds a gateway for them), ``needs_model=True`` for those that cannot work without,
#: ``check_space`` (space -> problem or None) for kinds that search only some spaces.
PROPOSERS: Registry[Proposer] = Registry("proposer", field="proposer")


@dataclass(frozen=True)
class ProposerContext:
    """What a proposer factory is given besides its options.

    Attributes:
        seed: the study's seed, for reproducible proposals.
        metric: the target's name, shown to a model.
        gateway: the study's model gateway (it prices, budgets and records each call); None without a model.
    """

    seed: int | None = None
    metric: str | None = None
    gateway: ModelGateway | None = None


def needs_model(kind: str) -> bool:
    """True for kinds that cannot propose without a model (``llm``)."""
    return bool(PROPOSERS.get(kind).meta.get("needs_model"))


def uses_model(kind: str) -> bool:
    """True for kinds that use the study's model when it has one (``llm``, ``auto``): they get a gateway."""
    meta = PROPOSERS.get(kind).meta
    return bool(meta.get("uses_model") or meta.get("needs_model"))


def make_proposer(
    kind: str,
    options: Mapping[str, Any] | BaseModel | None = None,
    context: ProposerContext | None = None,
) -> Proposer:
    """Build the proposer a study names.

    Args:
        kind: a registered kind: "random", "bo", "llm", "auto" or one of your own.
        options: the kind's options (a mapping or its options model); defaults for the rest.
        context: seed, metric and model gateway.

    Raises:
        ConfigError: unknown kind (the message lists the known ones), or a kind that needs a model without one.
        OptionsError: faulty options, each named (``proposer.batch_size: ...``).
    """
    return PROPOSERS.build(kind, options, context or ProposerContext(), where="proposer")


def space_problem(kind: str, space: Space) -> str | None:
    """Why proposer ``kind`` cannot search ``space`` (``evolve`` needs one Code parameter), or None; asked when
    a study is created or a job file checked, not minutes later at the first proposal."""
    check = PROPOSERS.get(kind).meta.get("check_space") if kind in PROPOSERS else None
    return None if check is None else check(space)

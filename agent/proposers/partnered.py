"""What the model-led proposers (``evolve``, ``prompt``) share: a model to ask, and a partner for when it fails.

Both ask the model for what only a model writes (a program, a prompt) and hand the rest to BO: the numeric
parameters beside it, and every proposal the model fails to make (an error, a refused budget, nothing new).
The study never waits on a model that cannot deliver.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

from agent.errors import ConfigError
from agent.llm.client import Completion, LLMError, Message
from agent.llm.gateway import Check, ModelBudgetExhausted
from agent.logs import announce_if_slow
from agent.proposers.bo import BOOptions, bo_from_options
from agent.proposers.registry import ProposerContext

if TYPE_CHECKING:
    from agent.llm.gateway import ModelGateway
    from agent.proposers.base import Proposer

log = logging.getLogger(__name__)

OptionsT = TypeVar("OptionsT", bound=BOOptions)


class PartneredProposer(Generic[OptionsT]):
    """A proposer that asks ``gateway``'s model and lets ``partner`` (BO) propose what the model does not.

    Args:
        gateway: the study's model gateway (budget, pricing, record).
        partner: BO on the numeric parameters, with the incumbent's texts.
        options: the kind's options (a :class:`BOOptions`: they also tune the partner).
        seed: makes the choices reproducible (a replay makes the same ones).
        metric: the target's name, shown to the model.
    """

    name: str

    def __init__(
        self,
        gateway: ModelGateway,
        partner: Proposer,
        options: OptionsT,
        seed: int | None = None,
        metric: str | None = None,
    ) -> None:
        self.gateway = gateway
        self.partner = partner
        self.options = options
        self.seed = seed
        self.metric = metric

    @classmethod
    def from_context(cls, options: OptionsT, context: ProposerContext) -> Self:
        """The proposer a study's settings describe, with BO as its partner.

        Raises:
            ConfigError: (field ``model``) the study has no model.
        """
        if context.gateway is None:
            raise ConfigError(f'proposer "{cls.name}" needs a model, e.g. model="local"', field="model")
        return cls(context.gateway, bo_from_options(options, context), options, context.seed, context.metric)

    def ask_model(
        self,
        messages: Sequence[Message],
        schema: Mapping[str, Any] | None,
        *,
        purpose: str,
        to: str,
        temperature: float,
        max_tokens: int,
        check: Check,
    ) -> Completion | None:
        """One model call through the gateway, its wait announced (``waiting for MODEL to {to}``); None when the
        budget refused it (quietly: the loop stops on the budget) or the model failed (a warning): either way
        the partner proposes."""
        try:
            with announce_if_slow(f"waiting for {self.gateway.model} to {to}", logger=log):
                return self.gateway.complete(
                    messages, schema, purpose=purpose, temperature=temperature, max_tokens=max_tokens, check=check
                )
        except ModelBudgetExhausted as exc:
            log.debug("no model call: %s; the partner proposes", exc)
        except LLMError as exc:
            log.warning("the model failed (%s); the partner proposes", exc)
        return None

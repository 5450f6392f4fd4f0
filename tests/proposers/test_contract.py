"""Every built-in proposer passes the proposer contract (agent.testing.proposers), as a new one would."""

from __future__ import annotations

import pytest

from agent.llm.gateway import ModelGateway
from agent.proposers import Proposer, ProposerContext, make_proposer
from agent.proposers.auto import AutoProposer
from agent.proposers.bo import BOProposer
from agent.proposers.random import RandomProposer
from agent.storage import InMemoryStorage
from agent.testing.proposers import ProposerContract
from agent.testing.scripted import ScriptedClient, schema_reply


def scripted_gateway(seed: int | None) -> ModelGateway:
    """A gateway to a model answering random valid batches: the same ones for the same seed."""
    storage = InMemoryStorage()
    study = storage.create_study("contract", "minimize", None, {}, {})
    client = ScriptedClient(default=schema_reply(seed or 0))
    return ModelGateway(client, storage, study.id, free=True)


class TestRandom(ProposerContract):
    def make_proposer(self, seed: int | None) -> Proposer:
        proposer = make_proposer("random", {}, ProposerContext(seed=seed))
        assert isinstance(proposer, RandomProposer)
        return proposer


class TestBO(ProposerContract):
    def make_proposer(self, seed: int | None) -> Proposer:
        # Less acquisition effort than the default: the contract is about what is returned, not how good it is.
        proposer = make_proposer("bo", {"num_restarts": 2, "raw_samples": 64}, ProposerContext(seed=seed))
        assert isinstance(proposer, BOProposer) and proposer.num_restarts == 2
        return proposer


class TestLLM(ProposerContract):
    proposes_text = True
    other_names = ("bo",)  # the BO partner fills what the model does not deliver

    def make_proposer(self, seed: int | None) -> Proposer:
        context = ProposerContext(seed=seed, metric="loss", gateway=scripted_gateway(seed))
        return make_proposer("llm", {"num_restarts": 2, "raw_samples": 64}, context)


class TestAutoWithAModel(ProposerContract):
    proposes_text = True
    other_names = ("llm", "bo")  # a portfolio names the arm that proposed

    def make_proposer(self, seed: int | None) -> Proposer:
        context = ProposerContext(seed=seed, gateway=scripted_gateway(seed))
        proposer = make_proposer("auto", {"zero_shot": 2, "num_restarts": 2, "raw_samples": 64}, context)
        assert isinstance(proposer, AutoProposer) and proposer.llm is not None
        return proposer


@pytest.mark.slow  # plain BO underneath, which TestBO already runs through the contract
class TestAutoWithoutAModel(ProposerContract):
    other_names = ("bo",)

    def make_proposer(self, seed: int | None) -> Proposer:
        proposer = make_proposer("auto", {}, ProposerContext(seed=seed))
        assert isinstance(proposer, AutoProposer) and proposer.llm is None
        return proposer


class TestPrompt(ProposerContract):
    proposes_text = True
    other_names = ("bo",)  # BO tunes the numbers around the best texts, and fills in for the model

    def make_proposer(self, seed: int | None) -> Proposer:
        context = ProposerContext(seed=seed, metric="loss", gateway=scripted_gateway(seed))
        return make_proposer("prompt", {"num_restarts": 2, "raw_samples": 64}, context)

"""The model-backend contract: what every :class:`~agent.llm.client.LLMClient` must do for tunesmith.

The rest of tunesmith relies on these rules and nothing else: a :class:`~agent.llm.client.Completion`
with the reply text, the parsed JSON when a schema was asked for (or why not), token counts for the
budget, a latency and the model's name; ``max_tokens`` honoured, so that a budget can cap a call;
``timeout_s`` taken, so that a run's wall time can bound a call; the caller's messages left as they were;
concurrent calls answered; and :class:`~agent.llm.client.LLMError` — never another exception — when no
reply can be had, so that a proposer can fall back instead of stopping the study. A new backend is tested
by subclassing::

    from agent.testing.llm import LLMBackendContract

    class TestMyBackend(LLMBackendContract):
        def make_client(self, tmp_path):
            return MyClient(...)

        def make_unreachable_client(self, tmp_path):   # optional: a client that can get no reply
            return MyClient(url="http://127.0.0.1:9")

A client that needs other fixtures (a server, a model loaded once per module) overrides the ``client``
(and ``unreachable_client``) fixture instead. Class attributes say what a backend cannot promise: a
replay answers what was recorded, not what was asked (``answers_what_was_asked = False``), and need not
cut at ``max_tokens`` (``honours_max_tokens = False``).
"""

from __future__ import annotations

import copy
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agent.llm.client import Completion, LLMClient, LLMError, extract_json
from agent.llm.gateway import ModelBudgetExhausted, ModelGateway
from agent.storage import InMemoryStorage

__all__ = ["CONTRACT_MESSAGES", "CONTRACT_SCHEMA", "LLMBackendContract", "contract_reply"]

#: The schema contract calls ask for: small enough for a 135M-parameter model to fill in a few tokens.
CONTRACT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "x": {"type": "number", "minimum": 0, "maximum": 1},
        "label": {"type": "string", "enum": ["a", "b"]},
    },
    "required": ["x", "label"],
    "additionalProperties": False,
}

CONTRACT_MESSAGES: list[dict[str, str]] = [
    {"role": "system", "content": "You answer with one JSON object and nothing else."},
    {"role": "user", "content": 'Give an object with "x" (a number from 0 to 1) and "label" ("a" or "b").'},
]


def contract_reply(x: float = 0.5, label: str = "a") -> str:
    """A valid answer to :data:`CONTRACT_SCHEMA`, for backends that replay or script their replies."""
    return f'{{"x": {x}, "label": "{label}"}}'


class LLMBackendContract:
    """The tests every model backend passes. Subclasses implement :meth:`make_client` (or the fixture)."""

    #: The backend cuts a reply at ``max_tokens`` (real models do; a replay returns what was recorded).
    honours_max_tokens: bool = True
    #: The reply answers this request (a replay answers the recorded one: its text mode may hold JSON).
    answers_what_was_asked: bool = True
    #: ``max_tokens`` for contract calls: enough for the contract's answer, small for slow models.
    max_tokens: int = 64

    def make_client(self, tmp_path: Path) -> LLMClient:
        """A client that answers; called once per test."""
        raise NotImplementedError

    def make_unreachable_client(self, tmp_path: Path) -> LLMClient | None:
        """A client that can get no reply (its server gone, its record used up); None skips those tests."""
        return None

    @pytest.fixture
    def client(self, tmp_path: Path) -> LLMClient:
        return self.make_client(tmp_path)

    @pytest.fixture
    def unreachable_client(self, tmp_path: Path) -> LLMClient | None:
        return self.make_unreachable_client(tmp_path)

    def ask(self, client: LLMClient, **options: Any) -> Completion:
        options.setdefault("schema", CONTRACT_SCHEMA)
        options.setdefault("max_tokens", self.max_tokens)
        return client.complete(CONTRACT_MESSAGES, **options)

    # What a reply holds -----------------------------------------------------------------------------------
    def test_it_is_an_llm_client_with_a_model_name(self, client: LLMClient) -> None:
        assert isinstance(client, LLMClient)
        assert isinstance(client.model, str) and client.model

    def test_a_reply_to_a_schema_is_parsed(self, client: LLMClient) -> None:
        reply = self.ask(client, temperature=0.7)
        assert isinstance(reply, Completion)
        assert isinstance(reply.text, str) and reply.text.strip()
        assert reply.parse_error is None, reply.text
        assert isinstance(reply.parsed, dict) and {"x", "label"} <= set(reply.parsed), reply.parsed
        assert reply.parsed == extract_json(reply.text)  # parsed is what the text says, not made up

    def test_counts_timing_and_identity_are_reported(self, client: LLMClient) -> None:
        reply = self.ask(client, temperature=0.0)
        assert isinstance(reply.prompt_tokens, int) and reply.prompt_tokens >= 0
        assert isinstance(reply.completion_tokens, int) and reply.completion_tokens >= 0
        assert reply.total_tokens == reply.prompt_tokens + reply.completion_tokens
        assert reply.latency_s >= 0
        assert reply.attempts >= 1
        assert isinstance(reply.mode, str) and reply.mode
        assert isinstance(reply.model, str) and reply.model
        assert reply.call_id is None  # only the gateway, which stores calls, sets it

    def test_without_a_schema_the_text_comes_back(self, client: LLMClient) -> None:
        reply = client.complete(CONTRACT_MESSAGES, max_tokens=self.max_tokens)
        assert isinstance(reply.text, str)
        assert reply.parse_error is None  # nothing was asked to parse
        if self.answers_what_was_asked:
            assert reply.parsed is None

    def test_max_tokens_is_honoured(self, client: LLMClient) -> None:
        if not self.honours_max_tokens:
            pytest.skip("this backend does not generate: it cannot cut a reply")
        reply = self.ask(client, max_tokens=3, temperature=0.0)
        assert reply.completion_tokens <= 3
        assert reply.parsed is None or reply.parse_error is None
        if reply.parsed is None:
            assert reply.parse_error, "a reply cut before its JSON ended must say why it has no parse"

    def test_a_time_limit_is_taken(self, client: LLMClient) -> None:
        reply = self.ask(client, timeout_s=300.0)  # ample: what is tested is that the limit is taken, not met
        assert reply.parse_error is None, reply.text

    def test_the_callers_messages_are_left_as_they_were(self, client: LLMClient) -> None:
        messages = copy.deepcopy(CONTRACT_MESSAGES)
        schema = copy.deepcopy(CONTRACT_SCHEMA)
        client.complete(messages, schema=schema, max_tokens=self.max_tokens)
        assert messages == CONTRACT_MESSAGES and schema == CONTRACT_SCHEMA

    def test_concurrent_calls_are_each_answered(self, client: LLMClient) -> None:
        replies: list[Completion] = []
        errors: list[BaseException] = []

        def call() -> None:
            try:
                replies.append(self.ask(client))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=call) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert errors == [] and len(replies) == 2
        assert all(reply.parse_error is None for reply in replies)

    # Failure ------------------------------------------------------------------------------------------
    def test_no_reply_is_an_llm_error(self, unreachable_client: LLMClient | None) -> None:
        if unreachable_client is None:
            pytest.skip("this backend has no unreachable form to test")
        with pytest.raises(LLMError) as caught:
            self.ask(unreachable_client)
        assert str(caught.value)
        assert isinstance(caught.value.attempts, int) and caught.value.attempts >= 0
        assert not isinstance(caught.value, ModelBudgetExhausted)

    # Through the gateway ------------------------------------------------------------------------------
    def test_the_gateway_stores_what_the_backend_returned(self, client: LLMClient) -> None:
        storage = InMemoryStorage()
        study = storage.create_study("contract", "minimize", None, {}, {})
        gateway = ModelGateway(client, storage, study.id, free=True)
        gateway.deadline = time.monotonic() + 300  # a run's wall time: the call gets what is left of it
        reply = gateway.complete(CONTRACT_MESSAGES, CONTRACT_SCHEMA, purpose="contract", max_tokens=self.max_tokens)
        [call] = storage.llm_calls(study.id)
        assert reply.call_id == call.id
        assert (call.reply, call.parsed, call.error) == (reply.text, reply.parsed, reply.parse_error)
        assert (call.prompt_tokens, call.completion_tokens) == (reply.prompt_tokens, reply.completion_tokens)
        assert (call.purpose, call.messages, call.usd) == ("contract", CONTRACT_MESSAGES, 0.0)

    def test_the_gateway_stores_a_failed_call(self, unreachable_client: LLMClient | None) -> None:
        if unreachable_client is None:
            pytest.skip("this backend has no unreachable form to test")
        storage = InMemoryStorage()
        study = storage.create_study("contract", "minimize", None, {}, {})
        gateway = ModelGateway(unreachable_client, storage, study.id, free=True)
        with pytest.raises(LLMError) as caught:
            gateway.complete(CONTRACT_MESSAGES, CONTRACT_SCHEMA, purpose="contract", max_tokens=self.max_tokens)
        [call] = storage.llm_calls(study.id)
        assert caught.value.call_id == call.id
        assert call.reply is None and call.error and call.attempts == caught.value.attempts

"""The model-backend contract (agent.testing.llm) on the backends that need no model: the real openai client
against the test server on 127.0.0.1, replay over a real SQLite storage, and the scripted test double. The
hf backend runs it with a real model in test_transformers_backend.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.llm.client import LLMClient
from agent.llm.openai import OpenAIClient
from agent.llm.replay import ReplayClient
from agent.storage import LLMCallRecord, SQLStorage
from agent.testing.llm import CONTRACT_MESSAGES, LLMBackendContract, contract_reply
from agent.testing.misbehaving_server import MisbehavingServer
from agent.testing.scripted import ScriptedClient, schema_reply


def openai_client(base_url: str) -> OpenAIClient:
    return OpenAIClient(
        "test-model",
        base_url=base_url,
        api_key="sk-test",
        timeout_s=2,
        max_attempts=2,
        max_total_s=5,
        backoff_s=0.01,
        max_backoff_s=0.05,
    )


class TestOpenAIBackend(LLMBackendContract):
    """The server behaves as real ones do (valid JSON for the schema asked, replies cut at max_tokens)."""

    @pytest.fixture
    def client(self) -> Iterator[LLMClient]:
        with MisbehavingServer(enforce_max_tokens=True) as server:
            yield openai_client(server.base_url)

    @pytest.fixture
    def unreachable_client(self) -> LLMClient:
        server = MisbehavingServer().start()
        url = server.base_url
        server.stop()  # nothing listens there any more: every request is refused
        return openai_client(url)


class TestReplayBackend(LLMBackendContract):
    honours_max_tokens = False  # it replays what was recorded, whatever max_tokens now says
    answers_what_was_asked = False

    def recorded(self, tmp_path: Path, calls: list[LLMCallRecord]) -> ReplayClient:
        storage = SQLStorage(f"sqlite:///{tmp_path / 'recorded.db'}")
        study = storage.create_study("recorded", "minimize", None, {}, {})
        for call in calls:
            storage.record_llm_call(study.id, call)
        return ReplayClient(storage, "recorded")

    def make_client(self, tmp_path: Path) -> LLMClient:
        reply = contract_reply(0.25, "b")
        call = LLMCallRecord(
            "propose", "recorded-model", CONTRACT_MESSAGES, reply, {"x": 0.25, "label": "b"}, None, 30, 9, mode="json"
        )
        return self.recorded(tmp_path, [call] * 4)

    def make_unreachable_client(self, tmp_path: Path) -> LLMClient:
        failed = LLMCallRecord("propose", "recorded-model", CONTRACT_MESSAGES, error="server gone", attempts=3)
        return self.recorded(tmp_path, [failed])


class TestReplayWhenTheRecordIsUsedUp(TestReplayBackend):
    def make_unreachable_client(self, tmp_path: Path) -> LLMClient:
        client = self.make_client(tmp_path)
        for _ in range(4):
            client.complete(CONTRACT_MESSAGES)
        return client


class TestScriptedClient(LLMBackendContract):
    def make_client(self, tmp_path: Path) -> LLMClient:
        return ScriptedClient(default=schema_reply(seed=1))

    def make_unreachable_client(self, tmp_path: Path) -> LLMClient:
        return ScriptedClient()  # nothing scripted and no default: "no reply scripted for call 1"


def test_the_scripted_client_keeps_what_it_was_asked_and_cuts_long_replies() -> None:
    client = ScriptedClient([contract_reply(), "x" * 400, ValueError("not an LLMError")], model="m")
    first = client.complete(CONTRACT_MESSAGES, schema={"type": "object"}, temperature=0.1, max_tokens=50)
    cut = client.complete(CONTRACT_MESSAGES, schema={"type": "object"}, max_tokens=10)
    with pytest.raises(ValueError, match="not an LLMError"):  # what was scripted is raised as it is
        client.complete(CONTRACT_MESSAGES)
    assert first.parsed == {"x": 0.5, "label": "a"} and first.model == "m" and first.mode == "json_schema"
    assert (cut.text, cut.completion_tokens) == ("x" * 40, 10) and "cut at max_tokens=10" in (cut.parse_error or "")
    assert [(r.temperature, r.max_tokens) for r in client.requests] == [(0.1, 50), (0.7, 10), (0.7, 1024)]
    assert client.requests[0].messages == CONTRACT_MESSAGES and client.remaining == 0
    client.push("later")
    assert client.complete(CONTRACT_MESSAGES).text == "later"

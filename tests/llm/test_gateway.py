"""The model gateway over a real SQLite storage: every call recorded and priced, budgets enforced *before*
calls (no request reaches the server once the budget cannot cover it), ``max_tokens`` cut to what is left.

The budget tests use the real ``openai`` client against the misbehaving server on 127.0.0.1, run as a
well-behaved server (it cuts replies at ``max_tokens``), or the scripted client when what matters is what
the client was asked.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.budget import Budget
from agent.errors import BudgetExhausted, ConfigError, TunesmithError
from agent.llm.client import Completion, LLMError
from agent.llm.gateway import MIN_CALL_S, ModelBudgetExhausted, ModelGateway, estimate_prompt_tokens
from agent.llm.openai import OpenAIClient
from agent.llm.pricing import check_prices, cost_usd, price_of, register_price
from agent.proposers.base import StudyView
from agent.proposers.llm import LLMProposer
from agent.proposers.random import RandomProposer
from agent.secrets import REDACTED
from agent.space import Float, Int, Space
from agent.storage import SQLStorage
from agent.testing.misbehaving_server import (
    Behaviour,
    MisbehavingServer,
    echo_headers,
    huge,
    ok,
    reply_from_schema,
    slow,
    status,
    trickle,
)
from agent.testing.scripted import ScriptedClient, ScriptedRequest

MESSAGES = [
    {"role": "system", "content": "You propose candidates for an optimizer."},
    {"role": "user", "content": "Propose a value of x in [0, 1]."},
]
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"x": {"type": "number", "minimum": 0, "maximum": 1}},
    "required": ["x"],
}
REPLY = '{"x": 0.5}'


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[SQLStorage]:
    storage = SQLStorage(f"sqlite:///{tmp_path / 'gateway.db'}")
    yield storage
    storage.close()


@pytest.fixture
def study_id(storage: SQLStorage) -> int:
    return storage.create_study("gateway", "minimize", None, {"x": {"type": "float", "low": 0, "high": 1}}, {}).id


def openai_client(server: MisbehavingServer, model: str = "test-model") -> OpenAIClient:
    return OpenAIClient(model, base_url=server.base_url, api_key="sk-test", timeout_s=2, max_attempts=2, backoff_s=0.01)


# Errors ---------------------------------------------------------------------------------------------------


def test_the_errors_sit_under_the_tunesmith_root() -> None:
    error = LLMError("down", attempts=3)
    assert isinstance(error, TunesmithError) and isinstance(error, RuntimeError)
    assert (error.attempts, error.call_id) == (3, None)
    refused = ModelBudgetExhausted("no tokens left", reason="token budget")
    assert isinstance(refused, LLMError) and isinstance(refused, BudgetExhausted)
    assert (refused.reason, refused.attempts, refused.call_id, str(refused)) == (
        "token budget",
        0,
        None,
        "no tokens left",
    )


# Recording ------------------------------------------------------------------------------------------------


def test_every_call_is_recorded_success_and_failure(storage: SQLStorage, study_id: int) -> None:
    client = ScriptedClient([REPLY, "no json here", LLMError("server gone", attempts=3)], prompt_tokens=12)
    gateway = ModelGateway(client, storage, study_id, free=True)

    good = gateway.complete(MESSAGES, SCHEMA, purpose="propose", temperature=0.2, max_tokens=100)
    unparsed = gateway.complete(MESSAGES, SCHEMA, purpose="repair", trial_number=7)
    with pytest.raises(LLMError) as caught:
        gateway.complete(MESSAGES, SCHEMA, purpose="propose")

    first, second, third = storage.llm_calls(study_id)
    assert (good.call_id, unparsed.call_id, caught.value.call_id) == (first.id, second.id, third.id)
    assert (first.purpose, first.model, first.messages, first.reply, first.parsed) == (
        "propose",
        "scripted",
        MESSAGES,
        REPLY,
        {"x": 0.5},
    )
    assert (first.prompt_tokens, first.completion_tokens, first.mode, first.error) == (12, 3, "json_schema", None)
    assert second.purpose == "repair" and second.trial_number == 7 and second.error and second.parsed is None
    assert (third.reply, third.error, third.attempts) == (None, "server gone", 3)
    assert client.requests[0].temperature == 0.2 and client.requests[0].max_tokens == 100
    spend = storage.spend(study_id)
    assert (spend.calls, spend.failed_calls, spend.usd) == (3, 2, 0.0)


def test_a_backend_breaking_the_protocol_is_recorded_and_raised_as_is(storage: SQLStorage, study_id: int) -> None:
    gateway = ModelGateway(ScriptedClient([KeyError("bug")]), storage, study_id, free=True)
    with pytest.raises(KeyError):
        gateway.complete(MESSAGES, purpose="propose")
    [call] = storage.llm_calls(study_id)
    assert call.error == "KeyError: 'bug'"


def test_calls_over_http_are_recorded_with_the_servers_counts(storage: SQLStorage, study_id: int) -> None:
    with MisbehavingServer([status(500), ok(REPLY)]) as server:
        gateway = ModelGateway(openai_client(server), storage, study_id, free=False, prices={"test-model": (1, 1)})
        reply = gateway.complete(MESSAGES, SCHEMA, purpose="propose")
    [call] = storage.llm_calls(study_id)
    assert call.id == reply.call_id and call.attempts == 2 and call.parsed == {"x": 0.5}
    assert call.prompt_tokens == reply.prompt_tokens > 1 and call.completion_tokens == reply.completion_tokens > 1
    assert call.usd == pytest.approx((call.prompt_tokens + call.completion_tokens) / 1e6)


def test_a_reply_the_caller_cannot_use_is_recorded_as_a_failed_call(storage: SQLStorage, study_id: int) -> None:
    client = ScriptedClient(['{"x": 7}', REPLY, "no json here", '{"x": 0.1}'])
    gateway = ModelGateway(client, storage, study_id, free=True)
    checked: list[Any] = []

    def check(completion: Completion) -> str | None:
        checked.append(completion.parsed)
        return None if 0 <= completion.parsed["x"] <= 1 else "x is outside [0, 1]"

    unusable = gateway.complete(MESSAGES, SCHEMA, purpose="propose", check=check)
    usable = gateway.complete(MESSAGES, SCHEMA, purpose="propose", check=check)
    unparsed = gateway.complete(MESSAGES, SCHEMA, purpose="propose", check=check)

    def broken(completion: Completion) -> str | None:
        raise KeyError("bug")

    with pytest.raises(KeyError):  # the caller's bug is raised, after the call (spent) is stored
        gateway.complete(MESSAGES, SCHEMA, purpose="propose", check=broken)
    calls = storage.llm_calls(study_id)
    assert [c.id for c in calls[:3]] == [unusable.call_id, usable.call_id, unparsed.call_id]
    assert [c.error for c in calls[:2]] == ["x is outside [0, 1]", None]
    assert calls[2].error == unparsed.parse_error and checked == [{"x": 7}, {"x": 0.5}]  # not run on a parse error
    assert (calls[3].reply, calls[3].error) == ('{"x": 0.1}', "the reply's check raised KeyError: 'bug'")
    assert unusable.parse_error is None  # the verdict is the caller's: its Completion is as the model sent it
    assert storage.spend(study_id).failed_calls == 3


# Time -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("misbehaviour", [slow(3600), trickle(interval_s=0.5)], ids=["hang", "trickle"])
def test_a_call_ends_with_the_runs_wall_time_and_is_stored_with_its_latency(
    storage: SQLStorage, study_id: int, misbehaviour: Behaviour
) -> None:
    """The probes: a model that hung ran a ``wall_time = "20s"`` run to 125 s, and failed calls were stored
    with a latency of 0. The client's own limits (60 s a request, 120 s a call) are far beyond the run's."""
    with MisbehavingServer(default=misbehaviour) as server:
        client = OpenAIClient("test-model", base_url=server.base_url, api_key="sk-test", max_attempts=3)
        gateway = ModelGateway(client, storage, study_id, free=True)
        gateway.deadline = time.monotonic() + 1.5
        started = time.monotonic()
        with pytest.raises(LLMError) as caught:
            gateway.complete(MESSAGES, SCHEMA, purpose="propose")
        elapsed = time.monotonic() - started
    assert 1.4 <= elapsed < 30  # the run's 1.5 s, not the client's 60 s a request
    [call] = storage.llm_calls(study_id)
    assert call.id == caught.value.call_id and call.reply is None and "APITimeoutError" in (call.error or "")
    assert 1.0 <= call.latency_s <= elapsed  # the wait it made, measured inside the test's
    assert storage.spend(study_id).failed_calls == 1


def test_no_request_is_made_once_the_wall_time_is_spent(storage: SQLStorage, study_id: int) -> None:
    client = ScriptedClient(default=REPLY)
    gateway = ModelGateway(client, storage, study_id, free=True)
    gateway.deadline = time.monotonic() + MIN_CALL_S / 2
    with pytest.raises(ModelBudgetExhausted, match="wall time") as caught:
        gateway.complete(MESSAGES, purpose="propose")
    assert (caught.value.reason, caught.value.attempts, gateway.refused) == ("wall time", 0, "wall time")
    assert client.requests == [] and storage.llm_calls(study_id) == []

    gateway.budget = None  # the next run: a new budget clears the refusal, and sets its own deadline
    gateway.deadline = time.monotonic() + 30
    gateway.complete(MESSAGES, purpose="propose")
    gateway.deadline = None
    gateway.complete(MESSAGES, purpose="propose")
    first, second = client.requests
    assert first.timeout_s is not None and 29 < first.timeout_s <= 30 and second.timeout_s is None
    assert gateway.refused is None


# Secrets --------------------------------------------------------------------------------------------------


def test_no_secret_reaches_the_model_or_the_record(
    storage: SQLStorage, study_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "sk-gateway-secret-0123456789"
    monkeypatch.setenv("SERVICE_TOKEN", "tok-of-the-objective-42")  # a secret-looking variable, set anywhere
    stderr = f"Traceback ...\nPermissionError: key {key} refused; SERVICE_TOKEN=tok-of-the-objective-42"
    asked = [*MESSAGES, {"role": "user", "content": f"The last trial failed:\n{stderr}"}]
    with MisbehavingServer([echo_headers()]) as server:
        client = OpenAIClient("test-model", base_url=server.base_url, api_key=key, timeout_s=2, max_attempts=1)
        reply = ModelGateway(client, storage, study_id, free=True).complete(asked, purpose="propose")
        [request] = server.requests
    assert request.headers["authorization"] == f"Bearer {key}"  # where the key belongs
    sent = json.dumps(request.messages)
    assert key not in sent and "tok-of-the-objective-42" not in sent and f"key {REDACTED} refused" in sent
    assert f"authorization: Bearer {REDACTED}" in reply.text  # the echo, scrubbed before the caller sees it
    [call] = storage.llm_calls(study_id)
    stored = json.dumps([call.messages, call.reply, call.error, call.parsed])
    assert key not in stored and "tok-of-the-objective-42" not in stored and call.reply == reply.text


# Prices ---------------------------------------------------------------------------------------------------


def test_hosted_calls_are_priced_from_the_table_and_the_studys_prices(storage: SQLStorage, study_id: int) -> None:
    def call(model: str, **options: Any) -> float:
        client = ScriptedClient([REPLY], model=model, prompt_tokens=1000, completion_tokens=500)
        ModelGateway(client, storage, study_id, **options).complete(MESSAGES, purpose="propose")
        return storage.llm_calls(study_id)[-1].usd

    assert call("gpt-4o-mini", free=False) == pytest.approx((1000 * 0.15 + 500 * 0.60) / 1e6)
    assert call("gpt-4o-mini", free=False, prices={"gpt-4o-mini": (1.0, 2.0)}) == pytest.approx(2000 / 1e6)
    assert call("my-model", free=False, prices={"my-model": {"input": 3, "output": 4}}) == pytest.approx(5000 / 1e6)
    register_price("acme-large-1", 10.0, 20.0)
    assert call("acme-large-1", free=False) == pytest.approx(20_000 / 1e6)
    assert call("gpt-4o", free=True) == 0.0  # a local or replayed model costs nothing whatever its name
    assert storage.spend(study_id).usd == pytest.approx((450 + 2000 + 5000 + 20_000) / 1e6)


def test_snapshots_take_their_models_price_and_bad_prices_are_refused() -> None:
    assert price_of("gpt-4o-mini-2024-07-18") == price_of("gpt-4o-mini") == (0.15, 0.60)
    assert price_of("gpt-4o-2024-08-06") == (2.50, 10.00)
    assert price_of("gpt-4o-minimal") is None
    assert cost_usd("gpt-4o", 1_000_000, 0, free=True) == 0.0
    with pytest.raises(ConfigError, match=r"prices\.m: prices must be finite non-negative"):
        check_prices({"m": (-1, 2)})
    with pytest.raises(ConfigError, match=r"prices\.m: expected \{input = ..., output = ...\}"):
        check_prices({"m": {"input": 1}})
    with pytest.raises(ConfigError, match=r"prices\.acme: expected \(input, output\)"):
        check_prices({"acme": "cheap"})
    with pytest.raises(ConfigError, match=r"prices\.acme:"):
        register_price("acme", float("nan"), 1.0)


def test_an_unknown_hosted_model_warns_once(
    storage: SQLStorage, study_id: int, caplog: pytest.LogCaptureFixture
) -> None:
    hosted = ModelGateway(ScriptedClient(default=REPLY, model="mystery-model-7"), storage, study_id, free=False)
    local = ModelGateway(ScriptedClient(default=REPLY, model="mystery-local-7"), storage, study_id, free=True)
    with caplog.at_level(logging.WARNING, logger="agent.llm.pricing"):
        for _ in range(3):
            hosted.complete(MESSAGES, purpose="propose")
            local.complete(MESSAGES, purpose="propose")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "'mystery-model-7'" in warnings[0] and "count as $0" in warnings[0]
    assert "[proposer.prices]" in warnings[0] and "register_price" in warnings[0]


# Budgets --------------------------------------------------------------------------------------------------


def test_a_spent_budget_refuses_the_call_before_any_request(storage: SQLStorage, study_id: int) -> None:
    with MisbehavingServer(default=ok(REPLY), enforce_max_tokens=True) as server:
        gateway = ModelGateway(openai_client(server), storage, study_id, free=True)
        first = gateway.complete(MESSAGES, SCHEMA, purpose="propose")
        gateway.budget = Budget(tokens=first.total_tokens + 10)  # 10 tokens left: not even the prompt fits
        with pytest.raises(ModelBudgetExhausted) as caught:
            gateway.complete(MESSAGES, SCHEMA, purpose="propose")
        assert len(server.requests) == 1  # the refused call never reached the server
    assert caught.value.reason == "token budget" and gateway.refused == "token budget"
    assert f"{first.total_tokens} of {first.total_tokens + 10} spent" in str(caught.value)
    assert len(storage.llm_calls(study_id)) == 1  # and nothing was recorded for it
    gateway.budget = None
    assert gateway.refused is None


def test_a_spent_money_budget_refuses_the_call(storage: SQLStorage, study_id: int) -> None:
    client = ScriptedClient(default=REPLY, model="gpt-4o", prompt_tokens=10_000, completion_tokens=1000)
    gateway = ModelGateway(client, storage, study_id, free=False)
    gateway.complete(MESSAGES, purpose="propose")  # $0.035
    gateway.budget = Budget(usd=0.035)
    with pytest.raises(ModelBudgetExhausted) as caught:
        gateway.complete(MESSAGES, purpose="propose")
    assert caught.value.reason == "money budget" and "$0.035 of $0.035 spent" in str(caught.value)
    assert len(client.requests) == 1


def test_a_prompt_that_alone_costs_more_than_is_left_is_refused(storage: SQLStorage, study_id: int) -> None:
    client = ScriptedClient(default=REPLY, model="pricey-prompts")
    gateway = ModelGateway(client, storage, study_id, free=False, prices={"pricey-prompts": (10_000.0, 0.0)})
    gateway.budget = Budget(usd=0.5)  # $0.01 a prompt token: 50 tokens, fewer than this prompt
    with pytest.raises(ModelBudgetExhausted, match="money budget leaves"):
        gateway.complete(MESSAGES, SCHEMA, purpose="propose")
    assert client.requests == [] and gateway.refused == "money budget"
    gateway.budget = Budget(usd=5.0)  # completions are free here: nothing to cut
    gateway.complete(MESSAGES, SCHEMA, purpose="propose", max_tokens=300)
    assert client.requests[0].max_tokens == 300


def test_max_tokens_is_cut_to_the_tokens_left(storage: SQLStorage, study_id: int) -> None:
    prompt = estimate_prompt_tokens(MESSAGES, SCHEMA)
    assert prompt == math.ceil((len(json.dumps(MESSAGES)) + len(json.dumps(SCHEMA))) / 3)
    with MisbehavingServer(default=ok(REPLY), enforce_max_tokens=True) as server:
        gateway = ModelGateway(openai_client(server), storage, study_id, free=True)
        gateway.budget = Budget(tokens=prompt + 100)
        gateway.complete(MESSAGES, SCHEMA, purpose="propose", max_tokens=1024)
        gateway.budget = Budget(tokens=prompt + 5000)
        gateway.complete(MESSAGES, SCHEMA, purpose="propose", max_tokens=1024)
        first, second = server.requests
    assert first.body["max_tokens"] == 100  # what the client sent over the wire
    assert second.body["max_tokens"] == 1024  # room enough: not cut
    spent = storage.spend(study_id).tokens
    assert spent < prompt + 5000


def test_max_tokens_is_cut_to_the_money_left(storage: SQLStorage, study_id: int) -> None:
    client = ScriptedClient(default=REPLY, model="priced")
    gateway = ModelGateway(client, storage, study_id, free=False, prices={"priced": (1.0, 1000.0)})
    gateway.budget = Budget(usd=0.05)  # $0.001 per completion token: 50 tokens, less the prompt's cost
    gateway.complete(MESSAGES, SCHEMA, purpose="propose")
    prompt_usd = estimate_prompt_tokens(MESSAGES, SCHEMA) * 1.0 / 1e6
    assert client.requests[0].max_tokens == math.floor((0.05 - prompt_usd) * 1e6 / 1000.0) == 49
    assert storage.spend(study_id).usd <= 0.05


def test_without_a_budget_nothing_is_cut_or_refused(storage: SQLStorage, study_id: int) -> None:
    client = ScriptedClient(default=REPLY)
    gateway = ModelGateway(client, storage, study_id, free=True)
    for _ in range(3):
        gateway.complete(MESSAGES, SCHEMA, purpose="propose", max_tokens=777)
    gateway.budget = Budget(trials=3)  # a budget without tokens or dollars does not limit calls
    gateway.complete(MESSAGES, SCHEMA, purpose="propose", max_tokens=777)
    assert [r.max_tokens for r in client.requests] == [777] * 4


def test_a_1500_token_budget_is_never_exceeded(storage: SQLStorage, study_id: int) -> None:
    """The measured fault: ``tokens = 1500`` stopped at 2,233 tokens, the budget being checked after calls.
    Here every call would like a 1 MB reply; the server cuts each at the ``max_tokens`` it is sent."""
    with MisbehavingServer(default=huge(), enforce_max_tokens=True) as server:
        gateway = ModelGateway(openai_client(server), storage, study_id, free=True)
        gateway.budget = Budget(tokens=1500)
        made = 0
        with pytest.raises(ModelBudgetExhausted):
            for _ in range(100):
                gateway.complete(MESSAGES, SCHEMA, purpose="propose", max_tokens=400)
                made += 1
                assert storage.spend(study_id).tokens <= 1500
        assert len(server.requests) == made >= 3
    spent = storage.spend(study_id).tokens
    assert 1500 - estimate_prompt_tokens(MESSAGES, SCHEMA) - 16 <= spent <= 1500


def test_a_proposer_run_with_a_1500_token_budget_stays_within_it(storage: SQLStorage, study_id: int) -> None:
    space = Space(x=Float(0.0, 1.0), n=Int(1, 8))
    with MisbehavingServer(default=ok(reply_from_schema(seed=1)), enforce_max_tokens=True) as server:
        gateway = ModelGateway(openai_client(server), storage, study_id, free=True)
        gateway.budget = Budget(tokens=1500)
        proposer = LLMProposer(gateway, RandomProposer(0), batch_size=1)
        view = StudyView(space, "minimize", [], seed=0)
        picks = [proposer.propose(view, 1, [])[0].proposer for _ in range(12)]
        asked = len(server.requests)
    assert storage.spend(study_id).tokens <= 1500 and gateway.refused == "token budget"
    assert picks[0] == "llm" and picks[-1] == "random" and asked == len(storage.llm_calls(study_id))


def test_two_threads_cannot_both_spend_the_last_tokens(storage: SQLStorage, study_id: int) -> None:
    prompt = estimate_prompt_tokens(MESSAGES)

    def slow_reply(request: ScriptedRequest) -> str:
        time.sleep(0.2)  # both threads would pass an unguarded check during this
        return REPLY

    client = ScriptedClient(default=slow_reply, prompt_tokens=prompt, completion_tokens=100)
    gateway = ModelGateway(client, storage, study_id, free=True)
    gateway.budget = Budget(tokens=prompt + 150)  # room for one call of prompt + 100 tokens, not two
    outcomes: list[str] = []

    def call() -> None:
        try:
            gateway.complete(MESSAGES, purpose="propose", max_tokens=100)
            outcomes.append("made")
        except ModelBudgetExhausted:
            outcomes.append("refused")

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["made", "refused"] and len(client.requests) == 1
    assert storage.spend(study_id).tokens <= prompt + 150


def test_bad_max_tokens_is_refused(storage: SQLStorage, study_id: int) -> None:
    gateway = ModelGateway(ScriptedClient(default=REPLY), storage, study_id, free=True)
    with pytest.raises(ValueError, match="max_tokens must be at least 1"):
        gateway.complete(MESSAGES, purpose="propose", max_tokens=0)

"""The OpenAI backend against a real (misbehaving) HTTP server on 127.0.0.1: the real ``openai`` SDK, real
sockets, no mocks. Small timeouts and backoffs keep the whole file to a few seconds."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agent.llm import make_client as make_model_client
from agent.llm.client import Completion, LLMClient, LLMError
from agent.llm.http import environment_proxy
from agent.llm.openai import OpenAIClient, client_from_spec, parse_retry_after
from agent.secrets import REDACTED, redact
from agent.testing.misbehaving_server import (
    MisbehavingServer,
    candidates_json,
    empty_array_json,
    empty_choices,
    extra_keys_json,
    fenced,
    go_away,
    huge,
    malformed_json_body,
    ok,
    out_of_bounds_json,
    prose_around,
    raw_body,
    reject_response_format,
    reject_tools,
    slow,
    status,
    tool_calls,
    trickle,
    truncated,
)

KEY = "sk-test-Very-Secret-Key-0123456789abcdef"

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "candidates": {
            "type": "array",
            "minItems": 1,
            "maxItems": 3,
            "items": {
                "type": "object",
                "properties": {
                    "x": {"type": "number", "minimum": 0, "maximum": 1},
                    "rationale": {"type": "string"},
                },
                "required": ["x", "rationale"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["candidates"],
    "additionalProperties": False,
}

MESSAGES = [
    {"role": "system", "content": "You propose candidates for an optimizer."},
    {"role": "user", "content": "Propose two values of x."},
]

GOOD = [{"x": 0.25, "rationale": "low end"}, {"x": 0.75, "rationale": "high end"}]


def make_client(server: MisbehavingServer, **options: Any) -> OpenAIClient:
    """A client with test-sized limits: 0.5 s requests, tiny backoff, 10 s per call."""
    settings: dict[str, Any] = {
        "api_key": KEY,
        "timeout_s": 0.5,
        "max_attempts": 4,
        "max_total_s": 10,
        "backoff_s": 0.01,
        "max_backoff_s": 0.05,
    }
    settings.update(options)
    return OpenAIClient("test-model", base_url=server.base_url, **settings)


# Good replies ------------------------------------------------------------------------------------------------


def test_good_reply_parses(misbehaving_server: MisbehavingServer) -> None:
    misbehaving_server.push(ok(candidates_json(GOOD)))
    client = make_client(misbehaving_server)
    assert isinstance(client, LLMClient)

    reply = client.complete(MESSAGES, schema=SCHEMA, temperature=0.3, max_tokens=200)

    assert isinstance(reply, Completion)
    assert reply.parsed == {"candidates": GOOD}
    assert reply.parse_error is None
    assert (reply.attempts, reply.mode, reply.model) == (1, "json_schema", "test-model")
    assert reply.prompt_tokens > 1 and reply.completion_tokens > 1  # the server's usage, not an estimate
    assert reply.latency_s > 0

    [request] = misbehaving_server.requests
    assert request.body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "candidates", "schema": SCHEMA, "strict": True},
    }
    assert request.body["messages"] == MESSAGES  # the schema travels in response_format, not in the prompt
    assert (request.body["temperature"], request.body["max_tokens"]) == (0.3, 200)
    assert request.headers["authorization"] == f"Bearer {KEY}"  # sent to the server, as it must be


def test_without_schema_the_text_is_returned_unparsed(misbehaving_server: MisbehavingServer) -> None:
    misbehaving_server.push(ok("Just some thoughts, no JSON."))
    reply = make_client(misbehaving_server).complete(MESSAGES)
    assert (reply.text, reply.parsed, reply.parse_error, reply.mode) == (
        "Just some thoughts, no JSON.",
        None,
        None,
        "text",
    )
    assert "response_format" not in misbehaving_server.requests[0].body


def test_missing_usage_is_estimated(misbehaving_server: MisbehavingServer) -> None:
    misbehaving_server.push(ok(candidates_json(GOOD), usage=False))
    reply = make_client(misbehaving_server).complete(MESSAGES, schema=SCHEMA)
    assert reply.parsed == {"candidates": GOOD}
    assert reply.prompt_tokens >= 1 and reply.completion_tokens == len(reply.text) // 4 + (len(reply.text) % 4 > 0)


def test_default_behaviour_answers_the_requested_schema(misbehaving_server: MisbehavingServer) -> None:
    """The server's default reply is valid for whatever schema was asked: a study can run against it."""
    client = make_client(misbehaving_server)
    replies = [client.complete(MESSAGES, schema=SCHEMA) for _ in range(3)]
    for reply in replies:
        assert reply.parse_error is None
        assert 1 <= len(reply.parsed["candidates"]) <= 3
        assert all(0 <= c["x"] <= 1 and isinstance(c["rationale"], str) for c in reply.parsed["candidates"])
    assert len({r.text for r in replies}) == 3


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (prose_around(candidates_json(GOOD)), {"candidates": GOOD}),
        (fenced(candidates_json(GOOD)), {"candidates": GOOD}),
        (out_of_bounds_json(GOOD, x=7.5), {"candidates": [{**c, "x": 7.5} for c in GOOD]}),
        (extra_keys_json(GOOD), {"candidates": [{**c, "unexpected": True} for c in GOOD]}),
        (empty_array_json(), {"candidates": []}),
    ],
    ids=["prose-around", "fenced", "out-of-bounds", "extra-keys", "empty-array"],
)
def test_json_is_extracted_but_not_validated(
    misbehaving_server: MisbehavingServer, content: str, expected: Any
) -> None:
    """A server that ignores response_format still gets its JSON read; validating it is the caller's job."""
    misbehaving_server.push(ok(content))
    reply = make_client(misbehaving_server).complete(MESSAGES, schema=SCHEMA)
    assert reply.parse_error is None
    assert reply.parsed == expected
    assert reply.attempts == 1


# Retries -----------------------------------------------------------------------------------------------------


def test_429_honours_retry_after(misbehaving_server: MisbehavingServer) -> None:
    misbehaving_server.push(status(429, retry_after=1), ok(candidates_json(GOOD)))
    client = make_client(misbehaving_server)  # backoff alone would wait at most 0.05 s

    started = time.monotonic()
    reply = client.complete(MESSAGES, schema=SCHEMA)
    elapsed = time.monotonic() - started

    assert reply.parsed == {"candidates": GOOD}
    assert reply.attempts == 2
    assert elapsed >= 0.95 and reply.latency_s >= 0.95
    first, second = misbehaving_server.requests
    assert second.received_at - first.received_at >= 0.95


def test_retry_after_is_capped(misbehaving_server: MisbehavingServer) -> None:
    misbehaving_server.push(status(429, retry_after=100), ok(candidates_json(GOOD)))
    started = time.monotonic()
    reply = make_client(misbehaving_server, max_retry_after_s=0.2).complete(MESSAGES, schema=SCHEMA)
    assert reply.attempts == 2
    assert 0.19 <= time.monotonic() - started < 50  # capped at 0.2 s, not the 100 s asked for


def test_retry_after_beyond_the_time_limit_gives_up_at_once(misbehaving_server: MisbehavingServer) -> None:
    misbehaving_server.push(status(429, retry_after=60))
    client = make_client(misbehaving_server, max_retry_after_s=60, max_total_s=2)
    started = time.monotonic()
    with pytest.raises(LLMError, match="retry after 60s") as caught:
        client.complete(MESSAGES, schema=SCHEMA)
    assert time.monotonic() - started < 30  # given up, not the 60 s waited
    assert caught.value.attempts == 1
    assert "RateLimitError (HTTP 429)" in str(caught.value)


def test_500_503_then_ok(misbehaving_server: MisbehavingServer) -> None:
    misbehaving_server.push(status(500), status(503), ok(candidates_json(GOOD)))
    reply = make_client(misbehaving_server).complete(MESSAGES, schema=SCHEMA)
    assert reply.parsed == {"candidates": GOOD}
    assert reply.attempts == 3
    assert len(misbehaving_server.requests) == 3


def test_repeated_500_gives_up_after_max_attempts(misbehaving_server: MisbehavingServer) -> None:
    misbehaving_server.set_default(status(500))
    client = make_client(misbehaving_server, max_attempts=3)
    with pytest.raises(LLMError) as caught:
        client.complete(MESSAGES, schema=SCHEMA)
    assert caught.value.attempts == 3
    assert len(misbehaving_server.requests) == 3
    message = str(caught.value)
    assert "gave up after 3 request(s)" in message
    assert "InternalServerError (HTTP 500)" in message
    assert KEY not in message


@pytest.mark.parametrize("code", [400, 401, 403, 404])
def test_other_4xx_are_not_retried(misbehaving_server: MisbehavingServer, code: int) -> None:
    misbehaving_server.set_default(status(code, message=f"nope {code}"))
    with pytest.raises(LLMError, match=f"HTTP {code}") as caught:
        make_client(misbehaving_server).complete(MESSAGES)  # no schema: nothing to fall back from
    assert caught.value.attempts == 1
    assert len(misbehaving_server.requests) == 1


def test_a_400_in_every_mode_is_an_llm_error_and_not_remembered(misbehaving_server: MisbehavingServer) -> None:
    """A 400 in a structured mode may be a refusal of the format in words we do not know, so the next mode is
    tried; when every mode gets it, the request itself is bad: an error, and the client keeps its mode."""
    misbehaving_server.set_default(status(400, message="context length exceeded"))
    client = make_client(misbehaving_server)
    with pytest.raises(LLMError, match="context length exceeded") as caught:
        client.complete(MESSAGES, schema=SCHEMA)
    assert caught.value.attempts == 3
    assert [r.response_format for r in misbehaving_server.requests][1:] == [{"type": "json_object"}, None]
    assert client.mode == "json_schema"


def test_malformed_body_is_retried(misbehaving_server: MisbehavingServer) -> None:
    """Decision: a 200 whose body is not a completion is a transport fault (a proxy's error page, a server
    dying mid-write), not a model reply to repair; retrying is safe, so it is retried like a 502. The SDK
    surfaces it as a bare json.JSONDecodeError (application/json body) or returns the body as a str (any
    other content type); both become a retryable error here."""
    misbehaving_server.push(malformed_json_body(), malformed_json_body("text/html"), ok(candidates_json(GOOD)))
    reply = make_client(misbehaving_server).complete(MESSAGES, schema=SCHEMA)
    assert reply.parsed == {"candidates": GOOD}
    assert reply.attempts == 3


def test_persistently_malformed_body_is_an_llm_error(misbehaving_server: MisbehavingServer) -> None:
    misbehaving_server.set_default(malformed_json_body())
    with pytest.raises(LLMError, match="not JSON") as caught:
        make_client(misbehaving_server, max_attempts=2).complete(MESSAGES, schema=SCHEMA)
    assert caught.value.attempts == 2
    assert len(misbehaving_server.requests) == 2


def test_gateway_error_inside_a_200_is_retried(misbehaving_server: MisbehavingServer) -> None:
    """Some gateways (OpenRouter, LiteLLM) report an upstream failure as HTTP 200 + {"error": ...}."""
    misbehaving_server.push(raw_body('{"error": {"message": "upstream overloaded", "code": 502}}'), ok("{}"))
    reply = make_client(misbehaving_server).complete(MESSAGES, schema=SCHEMA)
    assert (reply.parsed, reply.attempts) == ({}, 2)


def test_slow_server_times_out_then_retry_succeeds(misbehaving_server: MisbehavingServer) -> None:
    misbehaving_server.push(slow(3), ok(candidates_json(GOOD)))
    started = time.monotonic()
    reply = make_client(misbehaving_server, timeout_s=0.5).complete(MESSAGES, schema=SCHEMA)
    elapsed = time.monotonic() - started
    assert reply.parsed == {"candidates": GOOD}
    assert reply.attempts == 2
    assert 0.45 <= elapsed < 2.5


def test_total_time_limit_bounds_a_hanging_server(misbehaving_server: MisbehavingServer) -> None:
    misbehaving_server.set_default(slow(5))
    client = make_client(misbehaving_server, timeout_s=0.5, max_total_s=1.2, max_attempts=10)
    started = time.monotonic()
    with pytest.raises(LLMError, match="APITimeoutError") as caught:
        client.complete(MESSAGES, schema=SCHEMA)
    assert time.monotonic() - started < 4  # cut at 1.2 s; ten attempts of 0.5 s would take 5 s
    assert 2 <= caught.value.attempts < 10


def test_a_trickling_server_is_cut_at_the_calls_total_limit(misbehaving_server: MisbehavingServer) -> None:
    """The probe: headers, then a byte every 0.5 s, restart a per-read timeout forever (measured: still waiting
    after 60 s with these limits). Each request now ends at its own limit, and the call at its total."""
    misbehaving_server.set_default(trickle(interval_s=0.5))
    client = make_client(misbehaving_server, timeout_s=2, max_attempts=2, max_total_s=5, backoff_s=0.5)
    started = time.monotonic()
    with pytest.raises(LLMError, match="APITimeoutError") as caught:
        client.complete(MESSAGES, schema=SCHEMA)
    elapsed = time.monotonic() - started
    assert 3.9 <= elapsed < 5 + 1  # two requests of 2 s each, both cut mid-body, within max_total_s
    assert caught.value.attempts == len(misbehaving_server.requests) == 2


def test_the_callers_time_limit_cuts_the_call_below_its_own(misbehaving_server: MisbehavingServer) -> None:
    misbehaving_server.set_default(trickle(interval_s=0.2))
    client = make_client(misbehaving_server, timeout_s=30, max_attempts=3, max_total_s=60)
    started = time.monotonic()
    with pytest.raises(LLMError, match=r"gave up after 1 request\(s\)"):
        client.complete(MESSAGES, timeout_s=1.0)
    assert time.monotonic() - started < 15  # cut at the caller's 1 s, not the client's 30 s per request
    misbehaving_server.set_default(slow(3600))  # accepts, never answers
    started = time.monotonic()
    with pytest.raises(LLMError):
        client.complete(MESSAGES, schema=SCHEMA, timeout_s=0.8)
    assert time.monotonic() - started < 15


def test_calls_cut_at_their_limit_leave_no_socket_or_thread_behind(misbehaving_server: MisbehavingServer) -> None:
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("counts open file descriptors through /proc")
    misbehaving_server.set_default(trickle(interval_s=0.1))
    client = make_client(misbehaving_server, timeout_s=0.3, max_attempts=1, max_total_s=0.3)
    with pytest.raises(LLMError):  # the first call opens what a client keeps (its pool, the SDK's state)
        client.complete(MESSAGES)
    fds, threads = len(os.listdir("/proc/self/fd")), threading.active_count()
    for _ in range(5):
        with pytest.raises(LLMError):
            client.complete(MESSAGES)
    assert len(os.listdir("/proc/self/fd")) <= fds
    assert threading.active_count() <= threads + 1  # the server's handler of the last request may still be ending


def test_requests_go_through_the_environments_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert environment_proxy("https://models.example.com/v1") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    assert environment_proxy(None) == "http://proxy.internal:3128"  # the OpenAI API
    assert environment_proxy("https://models.example.com/v1") == "http://proxy.internal:3128"
    assert environment_proxy("http://models.example.com/v1") is None  # no proxy for plain http named
    assert environment_proxy("https://127.0.0.1:8000/v1") is None  # NO_PROXY


def test_server_gone_is_an_llm_error_in_bounded_time(misbehaving_server: MisbehavingServer) -> None:
    misbehaving_server.push(go_away)
    client = make_client(misbehaving_server, max_attempts=4)
    started = time.monotonic()
    with pytest.raises(LLMError) as caught:
        client.complete(MESSAGES, schema=SCHEMA)
    assert time.monotonic() - started < 3
    assert caught.value.attempts == 4
    message = str(caught.value)
    assert "APIConnectionError" in message
    assert "refused" in message.lower()  # the last attempt met a closed port
    assert KEY not in message
    assert len(misbehaving_server.requests) == 1  # the one it hung up on; later connections were refused

    with pytest.raises(LLMError):  # and it stays an error, not a hang
        client.complete(MESSAGES, schema=SCHEMA)


# Replies that arrive but are not usable ----------------------------------------------------------------------


def test_truncated_reply_sets_parse_error(misbehaving_server: MisbehavingServer) -> None:
    misbehaving_server.push(truncated(candidates_json(GOOD)))
    reply = make_client(misbehaving_server).complete(MESSAGES, schema=SCHEMA, max_tokens=12)
    assert reply.parsed is None
    assert reply.parse_error is not None and "max_tokens=12" in reply.parse_error
    assert reply.text and reply.attempts == 1  # returned for the caller to repair, not retried


def test_empty_choices_sets_parse_error(misbehaving_server: MisbehavingServer) -> None:
    misbehaving_server.push(empty_choices)
    reply = make_client(misbehaving_server).complete(MESSAGES, schema=SCHEMA)
    assert (reply.text, reply.parsed) == ("", None)
    assert reply.parse_error is not None and "no choices" in reply.parse_error


def test_empty_content_sets_parse_error(misbehaving_server: MisbehavingServer) -> None:
    misbehaving_server.push(ok(""))
    reply = make_client(misbehaving_server).complete(MESSAGES, schema=SCHEMA)
    assert (reply.text, reply.parsed) == ("", None)
    assert reply.parse_error is not None and "empty" in reply.parse_error


def test_huge_prose_reply_is_handled(misbehaving_server: MisbehavingServer) -> None:
    misbehaving_server.push(huge(1_000_000, tail=candidates_json(GOOD)))
    started = time.monotonic()
    reply = make_client(misbehaving_server, timeout_s=5).complete(MESSAGES, schema=SCHEMA)
    assert time.monotonic() - started < 3
    assert len(reply.text) > 1_000_000
    assert reply.parsed is None and reply.parse_error is not None and "too long" in reply.parse_error


def test_huge_json_reply_is_parsed(misbehaving_server: MisbehavingServer) -> None:
    big = {"candidates": [{"x": 0.5, "rationale": "r" * 1_000_000}]}
    misbehaving_server.push(ok(json.dumps(big)))
    reply = make_client(misbehaving_server, timeout_s=5).complete(MESSAGES, schema=SCHEMA)
    assert reply.parsed == big


def test_deeply_nested_garbage_does_not_crash(misbehaving_server: MisbehavingServer) -> None:
    """``extract_json`` raises RecursionError (not ValueError) on deep nesting; it must end as parse_error."""
    misbehaving_server.push(ok("[1," * 5000))
    reply = make_client(misbehaving_server).complete(MESSAGES, schema=SCHEMA)
    assert reply.parsed is None and reply.parse_error


# Structured-output fallback ----------------------------------------------------------------------------------


def test_rejected_json_schema_falls_back_to_json_object_and_remembers(misbehaving_server: MisbehavingServer) -> None:
    misbehaving_server.push(reject_response_format(), ok(candidates_json(GOOD)))
    client = make_client(misbehaving_server)

    reply = client.complete(MESSAGES, schema=SCHEMA)

    assert reply.parsed == {"candidates": GOOD}
    assert (reply.mode, reply.attempts) == ("json_object", 2)
    first, second = misbehaving_server.requests
    assert first.response_format is not None and first.response_format["type"] == "json_schema"
    assert second.response_format == {"type": "json_object"}
    system = second.messages[0]
    assert system["role"] == "system" and len([m for m in second.messages if m["role"] == "system"]) == 1
    assert system["content"].startswith(MESSAGES[0]["content"])
    assert json.dumps(SCHEMA, separators=(",", ":"), sort_keys=True) in system["content"]

    # The next call starts in json_object: no second probe of json_schema.
    misbehaving_server.push(ok(candidates_json(GOOD)))
    again = client.complete(MESSAGES, schema=SCHEMA)
    assert (again.mode, again.attempts) == ("json_object", 1)
    assert misbehaving_server.requests[2].response_format == {"type": "json_object"}
    assert client.mode == "json_object"


def test_rejected_json_object_falls_back_to_text(misbehaving_server: MisbehavingServer) -> None:
    misbehaving_server.push(
        reject_response_format("json_schema"),
        reject_response_format("json_object"),
        ok(prose_around(candidates_json(GOOD))),
    )
    client = make_client(misbehaving_server)
    reply = client.complete(MESSAGES, schema=SCHEMA)
    assert reply.parsed == {"candidates": GOOD}
    assert (reply.mode, reply.attempts) == ("text", 3)
    third = misbehaving_server.requests[2]
    assert third.response_format is None
    assert "JSON Schema" in third.messages[0]["content"]
    assert client.mode == "text"


def test_schema_instruction_becomes_the_system_message_when_there_is_none(
    misbehaving_server: MisbehavingServer,
) -> None:
    misbehaving_server.push(reject_response_format(), ok(candidates_json(GOOD)))
    make_client(misbehaving_server).complete([MESSAGES[1]], schema=SCHEMA)
    messages = misbehaving_server.requests[1].messages
    assert [m["role"] for m in messages] == ["system", "user"]


def test_fallback_mode_still_retries_transient_errors(misbehaving_server: MisbehavingServer) -> None:
    misbehaving_server.push(reject_response_format(), status(503), ok(candidates_json(GOOD)))
    reply = make_client(misbehaving_server).complete(MESSAGES, schema=SCHEMA)
    assert (reply.mode, reply.attempts) == ("json_object", 3)


# Keys and construction ---------------------------------------------------------------------------------------


def test_the_key_stays_secret(misbehaving_server: MisbehavingServer) -> None:
    client = make_client(misbehaving_server)
    assert KEY not in repr(client) and KEY not in str(client)
    assert "hidden" in repr(client)
    assert all(KEY not in repr(value) for name, value in vars(client).items() if name != "_client")

    # Even a server that echoes the key back in its error does not get it into the exception.
    misbehaving_server.set_default(status(401, message=f"Incorrect API key provided: {KEY}"))
    with pytest.raises(LLMError) as caught:
        client.complete(MESSAGES)
    assert KEY not in str(caught.value) and KEY not in repr(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_the_key_and_url_credentials_are_registered_as_secrets(misbehaving_server: MisbehavingServer) -> None:
    key = "sk-registered-by-the-client-42"
    OpenAIClient("m", base_url=misbehaving_server.base_url, api_key=key)
    url = misbehaving_server.base_url.replace("://", "://alice:PASSWORD987@")
    OpenAIClient("m", base_url=url)
    make_model_client(misbehaving_server.spec())  # a job's server URL without api_key_env: sent the placeholder
    assert redact(f"echo {key} and PASSWORD987") == f"echo {REDACTED} and {REDACTED}"
    assert "unused" in redact("Bearer unused")  # the placeholder is no secret


def test_an_api_key_variable_that_is_not_set_is_warned_about(
    misbehaving_server: MisbehavingServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("TUNESMITH_UNSET_KEY", raising=False)
    with caplog.at_level(logging.WARNING, logger="agent.llm.openai"):
        OpenAIClient("m", base_url=misbehaving_server.base_url)  # no variable named: a local server's habit
        assert not caplog.records
        client_from_spec(misbehaving_server.spec(), api_key_env="TUNESMITH_UNSET_KEY")
    [warning] = caplog.records
    assert "TUNESMITH_UNSET_KEY" in warning.getMessage() and "no API key" in warning.getMessage()


def test_official_api_without_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(LLMError, match="OPENAI_API_KEY"):
        OpenAIClient("gpt-4o-mini")
    monkeypatch.delenv("TUNESMITH_TEST_KEY", raising=False)
    with pytest.raises(LLMError, match="TUNESMITH_TEST_KEY"):
        client_from_spec("openai:gpt-4o-mini", api_key_env="TUNESMITH_TEST_KEY")


def test_key_from_environment_and_placeholder_for_local_servers(
    misbehaving_server: MisbehavingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TUNESMITH_TEST_KEY", "sk-from-env-42")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    misbehaving_server.push(ok("a"), ok("b"))

    OpenAIClient("m", base_url=misbehaving_server.base_url, api_key_env="TUNESMITH_TEST_KEY").complete(MESSAGES)
    OpenAIClient("m", base_url=misbehaving_server.base_url).complete(MESSAGES)

    first, second = misbehaving_server.requests
    assert first.headers["authorization"] == "Bearer sk-from-env-42"
    assert second.headers["authorization"] == "Bearer unused"


def test_client_from_spec_forms(misbehaving_server: MisbehavingServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    hosted = client_from_spec("openai:gpt-4o-mini")
    assert (hosted.model, hosted.base_url) == ("gpt-4o-mini", None)
    assert KEY not in repr(hosted)

    local = client_from_spec("http://127.0.0.1:8000/v1#qwen2.5-7b")
    assert (local.model, local.base_url) == ("qwen2.5-7b", "http://127.0.0.1:8000/v1")
    secure = client_from_spec("https://models.example.com/v1/#org/Model-7B-Instruct")
    assert (secure.model, secure.base_url) == ("org/Model-7B-Instruct", "https://models.example.com/v1")

    misbehaving_server.push(ok(candidates_json(GOOD)))
    live = client_from_spec(misbehaving_server.spec("served-model"), timeout_s=2, max_attempts=1)
    reply = live.complete(MESSAGES, schema=SCHEMA)
    assert reply.parsed == {"candidates": GOOD}
    assert misbehaving_server.requests[0].body["model"] == "served-model"


@pytest.mark.parametrize(
    "spec",
    [
        "gpt-4o-mini",
        "openai:",
        "openai:   ",
        "http://127.0.0.1:8000/v1",
        "http://127.0.0.1:8000/v1#",
        "ftp://127.0.0.1/v1#m",
        "http:///v1#m",
        "http://127.0.0.1:port/v1#m",
        "",
        "local",
    ],
)
def test_client_from_spec_rejects_other_forms(spec: str) -> None:
    with pytest.raises(ValueError, match=r"openai:<model>.*http\(s\)://host:port/v1#<model>"):
        client_from_spec(spec)


def test_spec_errors_do_not_show_url_credentials() -> None:
    with pytest.raises(ValueError) as caught:
        client_from_spec("http://user:hunter2@127.0.0.1:8000/v1")
    assert "hunter2" not in str(caught.value)


def test_bad_limits_are_rejected() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        OpenAIClient("m", base_url="http://127.0.0.1:1/v1", max_attempts=0)
    with pytest.raises(ValueError, match="timeout_s"):
        OpenAIClient("m", base_url="http://127.0.0.1:1/v1", timeout_s=0)


# Retry-After parsing -----------------------------------------------------------------------------------------

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("2", 2.0),
        ("0.5", 0.5),
        (" 3 ", 3.0),
        ("-4", 0.0),
        ("Thu, 01 Jan 2026 12:00:07 GMT", 7.0),
        ("Thu, 01 Jan 2026 11:59:00 GMT", 0.0),  # in the past: retry now
        ("soon", None),
        ("", None),
        (None, None),
        ("nan", None),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


def test_retry_after_as_http_date_is_honoured(misbehaving_server: MisbehavingServer) -> None:
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)  # whole seconds: 0 to 1 s away
    misbehaving_server.push(status(503, retry_after=when), ok(candidates_json(GOOD)))
    expected = (when - datetime.now(UTC)).total_seconds()
    started = time.monotonic()
    reply = make_client(misbehaving_server).complete(MESSAGES, schema=SCHEMA)
    elapsed = time.monotonic() - started
    assert reply.attempts == 2
    assert expected - 0.1 <= elapsed < 2


def test_the_token_limit_is_named_as_each_server_expects() -> None:
    official = OpenAIClient("gpt-4o-mini", api_key="sk-test")
    other = OpenAIClient("qwen", base_url="http://127.0.0.1:9/v1")
    messages = [{"role": "user", "content": "hi"}]
    assert official._request(messages, None, "text", 0.7, 99)["max_completion_tokens"] == 99
    assert "max_completion_tokens" not in other._request(messages, None, "text", 0.7, 99)
    assert other._request(messages, None, "text", 0.7, 99)["max_tokens"] == 99


TOOLS = [
    {
        "name": "narrow",
        "description": "search a parameter only in [low, high]",
        "parameters": {
            "type": "object",
            "properties": {"param": {"type": "string"}, "low": {"type": "number"}, "high": {"type": "number"}},
            "required": ["param", "low", "high"],
        },
    }
]


def test_tools_are_offered_and_the_calls_come_back_as_actions(misbehaving_server: MisbehavingServer) -> None:
    misbehaving_server.push(
        tool_calls([("narrow", {"param": "x", "low": 0, "high": 1}), ("narrow", "{not json")], content="Narrowing.")
    )
    completion = make_client(misbehaving_server).complete(MESSAGES, tools=TOOLS)
    assert completion.mode == "tools" and completion.parse_error is None
    assert completion.parsed == {
        "reply": "Narrowing.",
        "actions": [
            {"name": "narrow", "arguments": {"param": "x", "low": 0, "high": 1}},
            {"name": "narrow", "arguments": "{not json"},  # kept as sent: the caller says what is wrong with it
        ],
    }
    [request] = misbehaving_server.requests
    assert request.body["tools"] == [{"type": "function", "function": TOOLS[0]}]
    assert "response_format" not in request.body


def test_a_plain_answer_to_an_offer_of_tools_has_no_actions(misbehaving_server: MisbehavingServer) -> None:
    misbehaving_server.push(ok("Trial 3 is the best."), ok(""))
    client = make_client(misbehaving_server)
    assert client.complete(MESSAGES, tools=TOOLS).parsed == {"reply": "Trial 3 is the best.", "actions": []}
    empty = client.complete(MESSAGES, tools=TOOLS)
    assert empty.parsed is None and empty.parse_error == "empty reply"


def test_a_server_without_tool_calling_is_an_llm_error_naming_tools(misbehaving_server: MisbehavingServer) -> None:
    misbehaving_server.push(reject_tools())
    with pytest.raises(LLMError, match="tools are not supported"):
        make_client(misbehaving_server).complete(MESSAGES, tools=TOOLS)
    assert len(misbehaving_server.requests) == 1, "a 400 is not retried"


def test_tools_and_a_schema_are_not_asked_together(misbehaving_server: MisbehavingServer) -> None:
    with pytest.raises(ValueError, match="schema or tools"):
        make_client(misbehaving_server).complete(MESSAGES, SCHEMA, tools=TOOLS)

"""Known secret values are found wherever they are and scrubbed; objectives do not get them."""

from __future__ import annotations

import base64
import logging

import pytest

from agent.secrets import (
    REDACTED,
    RedactingFilter,
    is_secret_name,
    objective_environment,
    redact,
    redact_data,
    register,
    register_url_credentials,
    without_credentials,
)


@pytest.mark.parametrize(
    "name",
    ["OPENAI_API_KEY", "API_KEY", "HF_TOKEN", "GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD", "my_secret"],
)
def test_secret_looking_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["PATH", "HOME", "TOKENIZERS_PARALLELISM", "CUDA_VISIBLE_DEVICES", "KEYBOARD"])
def test_ordinary_names(name: str) -> None:
    assert not is_secret_name(name)


def test_environment_secrets_are_scrubbed_when_set_later(monkeypatch: pytest.MonkeyPatch) -> None:
    assert redact("key sk-later-123456") == "key sk-later-123456"
    monkeypatch.setenv("LATER_API_KEY", "sk-later-123456")
    monkeypatch.setenv("SHORT_TOKEN", "abc")  # too short to scrub without mangling text
    assert redact("key sk-later-123456, abc") == f"key {REDACTED}, abc"


def test_a_url_password_is_scrubbed_in_every_form_it_is_echoed_in() -> None:
    url = "http://alice:PASS%2Fword987@host:8000/v1#m"
    register_url_credentials(url)
    basic = base64.b64encode(b"alice:PASS/word987").decode()
    text = f"sent {url}; decoded PASS/word987; header Authorization: Basic {basic}"
    scrubbed = redact(text)
    assert "PASS" not in scrubbed and basic not in scrubbed
    assert without_credentials(url) == f"http://alice:{REDACTED}@host:8000/v1#m"
    assert without_credentials("http://host/v1") == "http://host/v1"


def test_data_is_scrubbed_recursively() -> None:
    register("sk-registered-000111")
    data = {"messages": [{"content": "use sk-registered-000111"}], "n": 3, "none": None}
    assert redact_data(data) == {"messages": [{"content": f"use {REDACTED}"}], "n": 3, "none": None}


def test_objectives_do_not_inherit_secrets_unless_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-model-key-42")
    monkeypatch.setenv("HF_TOKEN", "hf_token_value")
    monkeypatch.setenv("CUSTOM_KEY_VAR", "sk-registered-by-value")  # an api_key_env with an ordinary name
    register("sk-registered-by-value")
    env = objective_environment(pass_env=["HF_TOKEN"], extra={"TUNESMITH_TRIAL_NUMBER": "3"})
    assert "OPENAI_API_KEY" not in env and "CUSTOM_KEY_VAR" not in env
    assert env["HF_TOKEN"] == "hf_token_value" and env["TUNESMITH_TRIAL_NUMBER"] == "3"
    assert env["PATH"]


def test_log_records_are_scrubbed(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("PLANTED_API_KEY", "sk-planted-in-a-log")
    logger = logging.getLogger("tunesmith-test-secrets")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.WARNING):
        logger.warning("the server said %s", "invalid key sk-planted-in-a-log")
    assert caplog.messages == [f"the server said invalid key {REDACTED}"]

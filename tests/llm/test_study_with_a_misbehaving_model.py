"""A whole study against a real misbehaving HTTP server: the budget is always reached, every retry and
fallback is on record, and the API key is stored nowhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent import Categorical, Float, Space, create_study
from agent.llm.openai import OpenAIClient
from agent.testing.misbehaving_server import (
    MisbehavingServer,
    candidates_json,
    empty_array_json,
    go_away,
    huge,
    malformed_json_body,
    ok,
    prose_around,
    reply_from_schema,
    status,
    truncated,
)

SPACE = Space(x=Float(0.0, 1.0), k=Categorical(["a", "b"]))
SECRET = "sk-test-DO-NOT-STORE-0123456789"


def one(x: float, k: str = "a") -> str:
    return candidates_json([{"params": {"x": x, "k": k}, "rationale": f"try x={x}"}])


def client_for(server: MisbehavingServer) -> OpenAIClient:
    return OpenAIClient(
        "test-model",
        base_url=server.base_url,
        api_key=SECRET,
        timeout_s=2,
        max_attempts=2,
        max_total_s=10,
        backoff_s=0.01,
        max_backoff_s=0.05,
    )


@pytest.mark.slow
def test_the_study_survives_every_kind_of_misbehaviour(tmp_path: Path) -> None:
    script = [
        status(429, retry_after=1),
        ok(one(0.11)),  # trial 0: llm after a rate limit (2 attempts)
        status(500),
        ok(one(0.22)),  # trial 1: llm after a server error (2 attempts)
        malformed_json_body(),
        malformed_json_body(),  # trial 2: the call fails -> the partner proposes; trial 3: the model rests
        ok(prose_around(one(0.44))),  # trial 4: JSON found inside prose
        truncated(one(0.55)),
        ok(one(0.555)),  # trial 5: a cut reply -> repair turn -> the repair's candidate
        ok(candidates_json([{"params": {"x": 7.0, "k": "a"}, "rationale": "too far"}])),  # trial 6: out of bounds,
        ok(candidates_json([{"params": {"x": 0.6, "k": "a", "unexpected": 1}, "rationale": "?"}])),  # then extra keys
        # trial 7: the model rests
        ok(empty_array_json()),
        huge(),  # trial 8: an empty array, then a 1 MB non-answer; trials 9 and 10: the model rests
        go_away(),  # trial 11: the server is gone for good; later tries are refused
    ]
    with MisbehavingServer(script, default=ok(reply_from_schema())) as server:
        study = create_study(
            "chaos",
            SPACE,
            storage=f"sqlite:///{tmp_path / 'chaos.db'}",
            proposer="llm",
            model=client_for(server),
            seed=0,
        )
        summary = study.optimize(lambda p: (p["x"] - 0.3) ** 2 + (p["k"] == "b"), n_trials=18)

    assert summary.trials_run == 18
    trials = study.trials
    assert all(t.state.value == "complete" for t in trials)
    assert [t.proposer for t in trials] == (
        ["llm", "llm", "bo", "bo", "llm", "llm", "bo", "bo", "bo", "bo", "bo"] + ["bo"] * 7
    )
    assert [t.params["x"] for t in trials if t.proposer == "llm"] == [0.11, 0.22, 0.44, 0.555]

    calls = study.llm_calls
    summary_of_calls = [(c.purpose, c.attempts, c.error is None, c.trial_numbers) for c in calls]
    assert summary_of_calls[:10] == [
        ("propose", 2, True, (0,)),
        ("propose", 2, True, (1,)),
        ("propose", 2, False, ()),  # malformed bodies: retried, then given up
        ("propose", 1, True, (4,)),
        ("propose", 1, False, ()),  # truncated: parse error recorded
        ("repair", 1, True, (5,)),
        ("propose", 1, True, ()),  # out of bounds
        ("repair", 1, True, ()),  # extra key
        ("propose", 1, True, ()),  # empty array
        ("repair", 1, False, ()),  # 1 MB of prose
    ]
    # The server went away at trial 11 and was tried again at trial 16 (after resting 4 proposals).
    assert [(c.attempts, c.error is None) for c in calls[10:]] == [(2, False), (2, False)]
    assert "onnect" in (calls[10].error or "")
    spend = study.spend()
    assert spend.calls == 12 and spend.failed_calls == 5

    stored = (tmp_path / "chaos.db").read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("chaos.db-*"))
    assert SECRET.encode() not in stored
    assert SECRET not in json.dumps([c.__dict__ for c in calls], default=str)

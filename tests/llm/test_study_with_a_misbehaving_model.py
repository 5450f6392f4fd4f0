"""A whole study against a real misbehaving HTTP server: the budget is always reached, every retry and
fallback is on record, the API key is stored nowhere and sent nowhere but in its header, and a model that
hangs cannot hold a run past its wall time."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent import Categorical, Float, Space, create_study
from agent.llm.openai import OpenAIClient
from agent.testing.misbehaving_server import (
    MisbehavingServer,
    candidates_json,
    echo_headers,
    empty_array_json,
    go_away,
    huge,
    malformed_json_body,
    ok,
    prose_around,
    reply_from_schema,
    slow,
    status,
    truncated,
)

REPO = Path(__file__).resolve().parents[2]

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
        ("propose", 1, False, ()),  # out of bounds: no valid candidate, a failed call
        ("repair", 1, False, ()),  # extra key: likewise
        ("propose", 1, False, ()),  # empty array
        ("repair", 1, False, ()),  # 1 MB of prose
    ]
    # The server went away at trial 11 and was tried again at trial 16 (after resting 4 proposals).
    assert [(c.attempts, c.error is None) for c in calls[10:]] == [(2, False), (2, False)]
    assert "onnect" in (calls[10].error or "")
    spend = study.spend()
    assert spend.calls == 12 and spend.failed_calls == 8

    stored = (tmp_path / "chaos.db").read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("chaos.db-*"))
    assert SECRET.encode() not in stored
    assert SECRET not in json.dumps([c.__dict__ for c in calls], default=str)


def stored_bytes(folder: Path) -> bytes:
    """Every byte of the study's SQLite files (the database, its WAL and shared memory)."""
    return b"".join(path.read_bytes() for path in sorted(folder.glob("*.db*")))


def test_a_key_echoed_by_the_server_reaches_neither_storage_nor_later_prompts(tmp_path: Path) -> None:
    """The server answers with the request's headers, Authorization included: not JSON, so the proposer
    quotes the reply back in a repair turn. The key must be in no stored call and in no later prompt."""
    with MisbehavingServer(default=echo_headers()) as server:
        study = create_study(
            "echo", SPACE, storage=f"sqlite:///{tmp_path / 'echo.db'}", proposer="llm", model=client_for(server)
        )
        study.optimize(lambda p: p["x"], n_trials=3)
        requests = server.requests
    assert len(requests) >= 2 and all(r.headers["authorization"] == f"Bearer {SECRET}" for r in requests)
    assert "authorization: Bearer ***" in json.dumps(requests[1].messages)  # the repair quotes the echo, scrubbed
    assert all(SECRET not in json.dumps(r.messages) for r in requests)
    calls = study.llm_calls
    assert calls and all(c.error for c in calls)  # nothing usable came back
    assert SECRET not in json.dumps([[c.messages, c.reply, c.error, c.parsed] for c in calls])
    assert SECRET.encode() not in stored_bytes(tmp_path)


def test_a_password_in_the_models_url_is_stored_and_prompted_nowhere(tmp_path: Path) -> None:
    with MisbehavingServer(default=echo_headers()) as server:
        url = server.spec().replace("://", "://alice:PASSWORD987@")
        study = create_study("url", SPACE, storage=f"sqlite:///{tmp_path / 'url.db'}", proposer="llm", model=url)
        study.optimize(lambda p: p["x"], n_trials=2)
        requests = server.requests
    basic = base64.b64encode(b"alice:PASSWORD987").decode()
    assert requests and any(basic in r.headers.get("authorization", "") for r in requests)  # sent, as HTTP does
    calls = study.llm_calls
    assert calls and any("***" in (c.reply or "") for c in calls)  # the echo, scrubbed
    stored = json.dumps([[c.messages, c.reply, c.error, c.parsed] for c in calls])
    prompts = json.dumps([r.messages for r in requests])
    for secret in ("PASSWORD987", basic):
        assert secret not in stored and secret not in prompts
        assert secret.encode() not in stored_bytes(tmp_path)


OBJECTIVE = """\
import json, sys
print(json.dumps({"loss": (float(sys.argv[1]) - 0.3) ** 2}))
"""


@pytest.mark.slow
def test_a_hanging_model_cannot_hold_a_run_past_its_wall_time(tmp_path: Path) -> None:
    """The probe: ``wall_time = "20s"`` with a model that never answered stopped at 125 s. Through the CLI, the
    run must end within its wall time and a few seconds, the trials proposed by the model-free partner."""
    (tmp_path / "objective.py").write_text(OBJECTIVE)
    with MisbehavingServer(default=slow(3600)) as server:
        (tmp_path / "job.toml").write_text(
            f"""\
[study]
name = "hang"
direction = "minimize"
storage = "sqlite:///hang.db"
seed = 0

[space]
x = {{ type = "float", low = 0, high = 1 }}

[objective]
command = [{json.dumps(sys.executable)}, "objective.py", "{{x}}"]
metric = "loss"

[proposer]
kind = "llm"
model = "{server.spec()}"

[budget]
wall_time = "6s"
"""
        )
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "agent.cli", "run", "job.toml"],
            cwd=tmp_path,
            env={**env, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        elapsed = time.monotonic() - started
        asked = len(server.requests)
    assert proc.returncode == 0, proc.stderr
    assert "stopped: wall time" in proc.stdout
    assert elapsed < 6 + 10, f"the run took {elapsed:.1f}s"
    assert asked >= 1  # the model was asked, and hung
    with sqlite3.connect(tmp_path / "hang.db") as conn:
        trials = conn.execute("SELECT state, proposer FROM trials ORDER BY number").fetchall()
        calls = conn.execute("SELECT error, latency_s FROM llm_calls ORDER BY id").fetchall()
    # The hung call took the whole wall time: whatever ran was proposed by the partner, and no trial was started
    # once the wall time was spent (the call's cut came at the end of it).
    assert all(state == "complete" and proposer != "llm" for state, proposer in trials)
    assert calls and all(error and latency_s > 0 for error, latency_s in calls)
    assert max(latency_s for _, latency_s in calls) < 6 + 1

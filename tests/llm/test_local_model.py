"""The embedded default end to end: SmolLM2-135M in the real llama.cpp server, through the real openai
client, proposing for a real study. Slow-ish (a few seconds a call on 2 cores) but run in CI."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent import Categorical, Float, Int, Space, create_study
from agent.llm.local import bundled_model_path
from agent.proposers.llm import read_candidates

pytestmark = pytest.mark.slow

SPACE = Space(lr=Float(1e-4, 1e-1, log=True), depth=Int(1, 8), opt=Categorical(["adam", "sgd"]))


def objective(p: dict) -> float:
    return (p["depth"] - 3) ** 2 + abs(p["lr"] - 0.01) * 10 + (p["opt"] == "sgd")


def test_a_ten_trial_study_with_the_local_model(tmp_path: Path) -> None:
    assert bundled_model_path().is_file()
    study = create_study(
        "local-e2e",
        SPACE,
        storage=f"sqlite:///{tmp_path / 'local.db'}",
        proposer="llm",
        model="local",
        seed=0,
        context="a toy objective: depth near 3, lr near 0.01, adam better than sgd",
    )
    study.optimize(objective, n_trials=10)
    trials = study.trials
    assert len(trials) == 10 and all(t.state.value == "complete" for t in trials)
    assert all(SPACE.problems(t.params) == [] for t in trials)
    from_model = [t for t in trials if t.proposer == "llm"]
    assert from_model, "the local model contributed no trial"

    calls = study.llm_calls
    answered = [c for c in calls if c.reply is not None]
    assert answered and all(c.model == "smollm2-135m-instruct" for c in calls)
    assert all(c.mode == "json_schema" and c.prompt_tokens > 0 and c.completion_tokens > 0 for c in answered)
    assert all(c.usd == 0.0 for c in calls)
    for trial in from_model:  # each model trial points at the call that proposed it, and is valid there
        [call] = [c for c in calls if trial.number in c.trial_numbers]
        assert dict(trial.params) in [params for params, _ in read_candidates(SPACE, call.parsed).valid]
    spend = study.spend()
    assert spend.calls == len(calls) and spend.usd == 0.0


def test_the_process_exits_while_a_reply_is_being_generated(tmp_path: Path) -> None:
    """A run interrupted while a proposal was prepared in the background used to print its summary and never
    exit: stopping the server while it answered deadlocked. Now exit waits for the reply, then stops it."""
    import subprocess
    import sys

    script = tmp_path / "exit_mid_call.py"
    script.write_text(
        "import threading, time\n"
        "from agent.llm.local import local_client\n"
        "client = local_client()\n"
        "story = [{'role': 'user', 'content': 'Write a long story about a lighthouse.'}]\n"
        "ask = lambda: client.complete(story, max_tokens=400, temperature=1.0)\n"
        "threading.Thread(target=ask, daemon=True).start()\n"
        "time.sleep(1.0)\n"
        "print('exiting', flush=True)\n"
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "exiting" in done.stdout and "waiting for the local model to finish 1 reply" in done.stderr
    assert time.monotonic() - started < 90

"""The prompt-tuning benchmark's arms, run for real on the example's dev and test files with a scripted model
in both roles (the local model takes minutes: that is ``make bench-prompts``), and the report rendered from
their JSON."""

from __future__ import annotations

import json
from pathlib import Path

from agent.testing.scripted import ScriptedClient, ScriptedRequest
from evals import prompt_tuning


def small_model() -> ScriptedClient:
    """Writes numbered instructions when asked for JSON; as the task model, names the language right only when
    the instructions say "one word" (and French always, to leave a miss or two)."""
    written = iter(range(1000))

    def reply(request: ScriptedRequest) -> str:
        if request.schema is not None:
            text = f"Answer with one word ({next(written)})."
            return json.dumps({"candidates": [{"params": {"instructions": text}, "rationale": "shorter"}]})
        prompt = request.messages[-1]["content"]
        return "French" if "one word" in prompt else "The text is in French."

    return ScriptedClient(default=reply, model="small")


def test_both_arms_report_test_scores_and_what_they_spent(tmp_path: Path) -> None:
    feedback = prompt_tuning.run_arm("feedback", 0, 3, tmp_path, model=small_model())
    assert feedback["trials"] == 3 and feedback["initial"]["trial"] == 0
    assert feedback["initial"]["test"] is not None and feedback["best"]["test"] is not None
    assert feedback["task"]["calls"] >= 48 and feedback["optimizer"]["calls"] >= 2
    assert "written" not in feedback

    baseline = prompt_tuning.run_arm("no-feedback", 0, 3, tmp_path, model=small_model())
    written = baseline["written"]
    assert written["count"] == 2 and len(written["test_scores"]) == 2
    assert written["mean"] == sum(written["test_scores"]) / 2
    assert written["scoring"]["calls"] <= 2 * 32  # each written prompt on the 32 test sentences, at most once

    results = {
        "meta": {
            "command": "python -m evals.prompt_tuning --trials 3",
            "date": "2026-11-28T00:00:00+00:00",
            "machine": {"nproc": 2, "cpu": "cpu", "platform": "linux", "python": "3.11", "sqlite": "3"},
            "tunesmith": {"tree": "/repo", "git": "abc", "version": "0"},
            "load_average": {"start": [0.0, 0.0, 0.0], "end": [0.0, 0.0, 0.0]},
            "seconds": 60.0,
        },
        "trials": 3,
        "runs": [feedback, baseline],
    }
    report = prompt_tuning.render(json.loads(json.dumps(results, default=str)))
    assert "| feedback | 0 |" in report and "| no-feedback | 0 |" in report
    assert f"the 2 prompts it wrote score {written['mean']:.3f}" in report

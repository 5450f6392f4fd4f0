"""Prompt tuning end to end, through ``tunesmith run``: the optimizer and the task model behind a real
OpenAI-compatible server on 127.0.0.1 (the real ``openai`` client), a dev set and a held-out split in JSONL,
``show`` saying which examples flipped, and the job check refusing bad dev sets with their line numbers.
The real local model as the task model is at the end (slow)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent import Space, Text, create_study
from agent.testing.misbehaving_server import MisbehavingServer, ok
from tests.cli.helpers import tunesmith
from tests.tools.test_prompt_eval import REVIEWS, write_jsonl
from tools.prompt_eval import DevSetEvaluator, read_results

JOB = """\
[study]
name = "reviews"
direction = "maximize"
seed = 0

[space]
instructions = {{ type = "text", default = "Read this.", max_length = 400 }}

[objective]
dataset    = "dev.jsonl"
test       = "test.jsonl"
prompt     = "{{instructions}}\\nReview: {{input}}\\nSentiment:"
metric     = "exact_match"
minibatch  = 3
max_tokens = 16

[proposer]
kind  = "prompt"
model = "{model}"
context = "label restaurant reviews as positive or negative"

[budget]
trials = 4
"""

WRITTEN = ["Say if it is good.", "Answer with one word: positive or negative.", "Tell me.", "Label it in one word."]


def server_model() -> Callable[[dict[str, Any]], str]:
    """One server, two roles: asked for JSON (the optimizer), it writes the next prompt of WRITTEN; asked in
    plain text (the task model), it labels the review, in one word only when the prompt says so."""
    written = iter([*WRITTEN, *(f"Label it ({n})." for n in range(100))])

    def reply(body: dict[str, Any]) -> str:
        prompt = body["messages"][-1]["content"]
        if body.get("response_format"):
            return json.dumps({"candidates": [{"params": {"instructions": next(written)}, "rationale": "be precise"}]})
        review = prompt.rsplit("Review:", 1)[-1]
        label = "positive" if "good" in review else "negative"
        return label if "one word" in prompt else f"I would call it {label}."

    return reply


@pytest.fixture
def job(tmp_path: Path) -> Path:
    write_jsonl(tmp_path / "dev.jsonl", REVIEWS)
    write_jsonl(tmp_path / "test.jsonl", [("good bread", "positive"), ("burnt", "negative"), ("good wine", "positive")])
    return tmp_path / "job.toml"


def test_tunesmith_run_tunes_a_prompt_with_a_served_model(job: Path) -> None:
    with MisbehavingServer(default=ok(server_model()), model="served") as server:
        job.write_text(JOB.format(model=server.spec("served")))
        result = tunesmith("run", "job.toml", cwd=job.parent)
        assert result.code == 0, result.stderr
        shown = tunesmith("show", "job.toml", "1", cwd=job.parent)
        requests = server.requests

    out = result.stdout
    assert re.search(r"trial 0 complete +0 \(prompt", out)  # the prompt as written: rambling answers
    assert "trial 1 pruned: 0 on a minibatch of 3, the best has 0 there: not scored further (prompt" in out
    assert re.search(r"trial 2 complete +1 \(prompt", out)  # "Answer with one word": promoted, then all right
    assert "Held-out test split (exact_match): trial 0 (initial) 0, trial 2 (best) 1" in out
    assert "of which scoring candidates (the task model):" in out
    task_calls = [r for r in requests if not r.body.get("response_format")]
    assert len(task_calls) >= 8 + 3 + 8 + 3 * 2  # dev: a full baseline, minibatches, one promotion; test: 2 x 3

    assert shown.code == 0, shown.stderr
    assert "dev examples" in shown.stdout and "held-out test examples" not in shown.stdout
    assert "0 of 3 scored 1" in shown.stdout  # pruned: only its minibatch was scored
    assert re.search(r"line \d: expected '(\w+)', got 'I would call it \1.'", shown.stdout)

    best = tunesmith("show", "job.toml", "2", cwd=job.parent).stdout
    assert "8 of 8 scored 1" in best and "against trial 0: better on lines 1, 2, 3, 4, 5, 6, 7, 8" in best
    assert "held-out test examples" in best and "3 of 3 scored 1" in best
    assert "+Answer with one word: positive or negative." in best  # the prompt's diff against its parent


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "dataset: dev.jsonl: no examples"),
        (b'{"input": "a", "expected": "b"}\n{"input": "c"}\n', "dataset: dev.jsonl line 2: "),
        (
            b'{"input": "a", "expected": "b"}\n{"input": "caf\xe9", "expected": "x"}\n',
            "dataset: dev.jsonl line 2: not UTF-8",
        ),
        (b'{"input": "a", "expected": "b"}\n\n[1, 2]\n', "dataset: dev.jsonl line 3: "),
    ],
    ids=["empty", "missing-field", "not-utf8", "not-an-object"],
)
def test_a_bad_dev_set_is_refused_with_its_line_before_anything_runs(job: Path, content: bytes, expected: str) -> None:
    job.write_text(JOB.format(model="local").replace('kind  = "prompt"', 'kind  = "bo"'))
    (job.parent / "dev.jsonl").write_bytes(content)
    result = tunesmith("run", "job.toml", "--dry-run", cwd=job.parent)
    assert result.code == 2
    assert f"objective.{expected}" in result.stderr, result.stderr


def test_the_job_check_names_each_fault_of_a_dataset_objective(job: Path) -> None:
    text = (
        JOB.format(model="local")
        .replace('direction = "maximize"', 'direction = "minimize"')
        .replace("Review: {input}", "Review: {review}")
        .replace('test       = "test.jsonl"', 'test       = "missing.jsonl"')
    )
    job.write_text(text.replace('kind  = "prompt"', 'kind  = "bo"'))
    result = tunesmith("run", "job.toml", "--dry-run", cwd=job.parent)
    assert result.code == 2
    assert 'objective.metric: exact_match is higher for better outputs; set direction = "maximize" in [study]' in (
        result.stderr
    )
    assert "{review} is neither a parameter (instructions) nor a field of dev.jsonl line 1" in result.stderr
    assert "objective.test: missing.jsonl: no such file" in result.stderr


@pytest.mark.slow
def test_the_local_model_as_the_task_model(tmp_path: Path) -> None:
    dev = write_jsonl(tmp_path / "dev.jsonl", REVIEWS[:4])
    study = create_study(
        "local-task",
        Space(instructions=Text("Is this review positive or negative? Answer with one word.")),
        direction="maximize",
        metric="contains",
        proposer="bo",
        storage=f"sqlite:///{tmp_path / 'l.db'}",
    )
    study.optimize(
        DevSetEvaluator(dev, metric="contains", prompt="{instructions}\nReview: {input}\nAnswer:", task_model="local"),
        n_trials=1,
    )
    [trial] = study.trials
    assert trial.state.value == "complete" and 0.0 <= (trial.value or 0.0) <= 1.0
    calls = study.llm_calls
    assert len(calls) == 4 and {c.model for c in calls} == {"smollm2-135m-instruct"}
    assert all(c.purpose == "evaluate" and c.trial_number == 0 and c.completion_tokens > 0 for c in calls)
    outputs = [r["output"] for r in read_results(study.artifact(trial, "examples"))]
    assert len(outputs) == 4 and all(isinstance(o, str) and o for o in outputs)


PIPELINE_JOB = """\
[study]
name = "with-code"
direction = "maximize"

[space]
instructions = {{ type = "text", default = "Read this." }}

[objective]
dataset  = "dev.jsonl"
pipeline = "mine:pipeline"
metric   = "mine:score"
task_model = "{model}"

[proposer]
kind = "bo"

[budget]
trials = 2

[[enqueue]]
instructions = "Answer with one word."
"""

MINE = """\
def pipeline(params, example, model):
    return model(params["instructions"] + "\\nReview: " + example["input"], max_tokens=4)


def score(output, example):
    return output == example["expected"]
"""


def test_a_job_file_with_its_own_pipeline_and_metric(job: Path) -> None:
    (job.parent / "mine.py").write_text(MINE)
    with MisbehavingServer(default=ok(server_model()), model="served") as server:
        job.write_text(PIPELINE_JOB.format(model=server.spec("served")))
        result = tunesmith("run", "job.toml", cwd=job.parent)
        requests = server.requests
    assert result.code == 0, result.stderr
    assert re.search(r"trial 0 complete +1 \(enqueued", result.stdout)
    assert re.search(r"trial 1 complete +1 \(bo", result.stdout)  # BO keeps the best texts: nothing else to tune
    assert len(requests) == 2 * len(REVIEWS) and all(r.body["max_tokens"] == 4 for r in requests)

    (job.parent / "mine.py").write_text("def pipeline(params, example):\n    return 1\n")
    broken = tunesmith("run", "job.toml", "--dry-run", cwd=job.parent)
    assert broken.code == 2 and "objective.metric: module 'mine' has no attribute 'score'" in broken.stderr

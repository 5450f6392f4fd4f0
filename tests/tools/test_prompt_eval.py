"""The dev-set evaluator: pipelines scored example by example, minibatch promotion, the budget on task-model
calls, the held-out split, and per-example results kept with each trial.

The task model here is a scripted one that follows instructions the way a small model does (it answers in
one word only when told to), so each test can say exactly which prompt must win; the real local model and
a real OpenAI-compatible server are driven in ``tests/test_prompt_tuning.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent import Budget, Float, Space, Text, create_study
from agent.errors import ConfigError
from agent.loop import StopReason
from agent.testing.scripted import ScriptedClient, ScriptedRequest
from agent.trial import TrialState
from tools.prompt_eval import DevSetEvaluator, TemplatePipeline, fill, read_results

VAGUE = "Read this."
PRECISE = "Answer with one word: positive or negative."
REVIEWS = [
    ("good food, good service", "positive"),
    ("cold soup and a rude waiter", "negative"),
    ("good value", "positive"),
    ("never again", "negative"),
    ("a good place for families", "positive"),
    ("slow and noisy", "negative"),
    ("good coffee", "positive"),
    ("overpriced", "negative"),
]


def follows_instructions(request: ScriptedRequest) -> str:
    """A task model that labels reviews by the word "good", in one word only when the prompt asks for it."""
    prompt = request.messages[-1]["content"]
    review = prompt.rsplit("Review:", 1)[-1]
    label = "positive" if "good" in review else "negative"
    return f"{label.capitalize()}." if "one word" in prompt else f"Well, I would say this review is {label} overall."


def write_jsonl(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("".join(json.dumps({"input": text, "expected": label}) + "\n" for text, label in rows))
    return path


@pytest.fixture
def dev(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "dev.jsonl", REVIEWS)


def study_for(tmp_path: Path, space: Space | None = None, metric: str = "exact_match", **kwargs):
    client = kwargs.pop("client", None) or ScriptedClient([], default=follows_instructions, model="task-double")
    return create_study(
        "prompts",
        space or Space(instructions=Text(VAGUE)),
        direction="maximize",
        metric=metric,
        proposer="bo",
        model=client,
        storage=f"sqlite:///{tmp_path / 'p.db'}",
        seed=0,
        **kwargs,
    ), client


def evaluator(dev: Path, **options) -> DevSetEvaluator:
    return DevSetEvaluator(dev, prompt="{instructions}\nReview: {input}\nSentiment:", **options)


def test_a_candidate_is_scored_on_every_example_and_each_result_is_kept(tmp_path: Path, dev: Path) -> None:
    study, client = study_for(tmp_path)
    study.enqueue({"instructions": PRECISE})
    study.optimize(evaluator(dev, minibatch=0), n_trials=1)

    [trial] = study.trials
    assert trial.state is TrialState.COMPLETE and trial.value == 1.0
    assert trial.metrics["examples"] == 8 and trial.metrics["task_calls"] == 8 and trial.metrics["task_tokens"] > 0
    results = read_results(study.artifact(trial, "examples"))
    assert [r["line"] for r in results] == list(range(1, 9))
    assert results[1] == {
        "line": 2,
        "input": "cold soup and a rude waiter",
        "expected": ["negative"],
        "output": "Negative.",
        "score": 1.0,
    }
    # every task-model call is the study's, for this trial, and asked what the template says
    calls = study.llm_calls
    assert len(calls) == 8 and {c.purpose for c in calls} == {"evaluate"} and calls[0].trial_number == 0
    assert client.requests[0].messages == [
        {"role": "user", "content": f"{PRECISE}\nReview: good food, good service\nSentiment:"}
    ]
    assert client.requests[0].temperature == 0.0 and client.requests[0].max_tokens == 64


@pytest.mark.parametrize(
    ("metric", "vague_score"),
    [("exact_match", 0.0), ("contains", 1.0), ("token_f1", pytest.approx(2 / 10, abs=0.01))],
)
def test_the_metric_decides_what_a_rambling_answer_is_worth(
    tmp_path: Path, dev: Path, metric: str, vague_score: float
) -> None:
    study, _ = study_for(tmp_path, metric=metric)
    study.enqueue({"instructions": VAGUE})
    study.optimize(evaluator(dev, minibatch=0, metric=metric), n_trials=1)
    assert study.trials[0].value == vague_score


def test_a_regex_metric_reads_patterns_from_the_dev_set(tmp_path: Path) -> None:
    dev = tmp_path / "dev.jsonl"
    dev.write_text(
        json.dumps({"input": "good", "expected": "(?i)^positive"})
        + "\n"
        + json.dumps({"input": "bad", "expected": "^positive"})
        + "\n"
    )
    study, _ = study_for(tmp_path, metric="regex")
    study.enqueue({"instructions": PRECISE})
    study.optimize(evaluator(dev, minibatch=0, metric="regex"), n_trials=1)
    assert study.trials[0].value == 0.5  # "Positive." matches the first; "Negative." not the second


def test_a_python_metric_and_pipeline_with_the_task_model(tmp_path: Path, dev: Path) -> None:
    (tmp_path / "mine.py").write_text(
        "def pipeline(params, example, model):\n"
        "    return model(params['instructions'] + '\\nReview: ' + example['input'], max_tokens=5)\n"
        "def length_ok(output, example):\n"
        "    return len(output) < 12\n"
    )
    study, client = study_for(tmp_path, metric="mine:length_ok")
    study.enqueue({"instructions": PRECISE})
    study.optimize(
        DevSetEvaluator(dev, metric="mine:length_ok", pipeline="mine:pipeline", minibatch=0, folder=tmp_path),
        n_trials=1,
    )
    assert study.trials[0].value == 1.0
    assert client.requests[0].max_tokens == 5 and len(study.llm_calls) == 8


def test_a_pipeline_without_a_model_argument_and_one_that_raises(tmp_path: Path, dev: Path) -> None:
    def upper(params, example):
        if example["input"] == "never again":
            raise RuntimeError("no upper case here")
        return example["expected"].upper()

    study, _ = study_for(tmp_path)
    study.enqueue({"instructions": "a"})
    study.optimize(DevSetEvaluator(dev, pipeline=upper, minibatch=0), n_trials=1)
    [trial] = study.trials
    assert trial.state is TrialState.FAILED
    assert trial.error == "RuntimeError: no upper case here (dev.jsonl line 4)"
    assert "Traceback" in (trial.feedback or "") and study.llm_calls == []


def test_a_minibatch_loser_is_pruned_and_a_winner_is_promoted_to_the_full_set(tmp_path: Path, dev: Path) -> None:
    study, _ = study_for(tmp_path)
    for text in (VAGUE, PRECISE, "Tell me what you think."):
        study.enqueue({"instructions": text})
    study.optimize(evaluator(dev, minibatch=3), n_trials=3)

    first, second, third = study.trials
    assert first.state is TrialState.COMPLETE and first.value == 0.0 and first.metrics["examples"] == 8
    # beats the incumbent on its minibatch, so it is scored on everything
    assert second.state is TrialState.COMPLETE and second.value == 1.0 and second.metrics["examples"] == 8
    assert second.metrics["task_calls"] == 8  # the minibatch is not scored twice
    # loses on the minibatch: no value (a 3-example score never competes with full ones), its score as metrics
    assert third.state is TrialState.PRUNED and third.value is None
    assert third.metrics["examples"] == 3 and third.metrics["task_calls"] == 3
    assert third.metrics["minibatch_score"] == 0.0 and third.metrics["incumbent_minibatch_score"] == 1.0
    assert (third.feedback or "").startswith("0 on a minibatch of 3, the best has 1 there: not scored further\n")
    assert len(read_results(study.artifact(third, "examples"))) == 3
    assert study.best_trial.number == 1
    assert len(study.llm_calls) == 8 + 8 + 3  # the incumbent's minibatch scores come from its stored results


def test_the_call_budget_stops_the_run_on_task_model_calls(tmp_path: Path, dev: Path) -> None:
    study, _ = study_for(tmp_path)
    study.enqueue({"instructions": PRECISE})
    study.enqueue({"instructions": VAGUE})
    summary = study.optimize(evaluator(dev, minibatch=0), n_trials=5, budget=Budget(model_calls=12))

    assert summary.stopped_because is StopReason.CALL_BUDGET
    first, second = study.trials
    assert first.state is TrialState.COMPLETE
    assert second.state is TrialState.FAILED
    assert second.error == (
        "the call budget ran out after 4 of 8 examples: this candidate was not fully scored (raise the budget and run "
        "again)"
    )
    assert study.spend().calls == 12


def test_the_token_budget_counts_task_model_tokens_too(tmp_path: Path, dev: Path) -> None:
    study, _ = study_for(tmp_path)
    study.enqueue({"instructions": PRECISE})
    summary = study.optimize(evaluator(dev, minibatch=0), n_trials=3, budget=Budget(tokens=150))
    assert summary.stopped_because is StopReason.TOKEN_BUDGET
    assert study.trials[0].state is TrialState.FAILED and "token budget ran out" in (study.trials[0].error or "")
    assert study.spend().tokens <= 150


def test_the_test_split_is_scored_once_for_the_initial_and_the_best(tmp_path: Path, dev: Path) -> None:
    test = write_jsonl(tmp_path / "test.jsonl", [("good tea", "positive"), ("awful", "negative")])
    study, _ = study_for(tmp_path)
    study.enqueue({"instructions": VAGUE})  # the space's default: the prompt as the user wrote it
    study.enqueue({"instructions": PRECISE})
    scored = evaluator(dev, minibatch=0, test=test)
    study.optimize(scored, n_trials=2)

    by_text = {t.params["instructions"]: t for t in study.trials}
    initial, best = by_text[VAGUE], by_text[PRECISE]
    assert initial.user_attrs["test_exact_match"] == 0.0 and best.user_attrs["test_exact_match"] == 1.0
    assert len(read_results(study.artifact(best, "test"))) == 2
    test_calls = [c for c in study.llm_calls if c.purpose == "test"]
    assert len(test_calls) == 4

    study.optimize(scored, n_trials=1)  # a later run looks at the split again only for a new best
    assert len([c for c in study.llm_calls if c.purpose == "test"]) == 4


def test_a_study_with_another_metric_or_direction_is_refused(tmp_path: Path, dev: Path) -> None:
    study, _ = study_for(tmp_path, metric="accuracy")
    with pytest.raises(ConfigError, match="metric='exact_match'"):
        study.optimize(evaluator(dev), n_trials=1)
    minimizing = create_study("m", Space(instructions=Text(VAGUE)), metric="exact_match", storage="memory:")
    with pytest.raises(ConfigError, match='direction="maximize"'):
        minimizing.optimize(evaluator(dev), n_trials=1)


def test_settings_are_checked_before_anything_is_read(dev: Path) -> None:
    with pytest.raises(ConfigError, match="prompt"):
        DevSetEvaluator(dev)
    with pytest.raises(ConfigError, match="minibatch"):
        DevSetEvaluator(dev, prompt="{input}", minibatch=-1)


def test_a_space_temperature_sets_the_call_and_braces_of_other_text_stay(tmp_path: Path, dev: Path) -> None:
    space = Space(instructions=Text(PRECISE), temperature=Float(0.0, 1.0))
    study, client = study_for(tmp_path, space=space)
    study.enqueue({"temperature": 0.25})
    study.optimize(
        DevSetEvaluator(dev, prompt='{instructions} Reply as {"label": ...}. {input}', minibatch=0), n_trials=1
    )
    assert client.requests[0].temperature == 0.25
    assert client.requests[0].messages[0]["content"] == f'{PRECISE} Reply as {{"label": ...}}. good food, good service'


def test_fill_and_the_template_pipeline() -> None:
    assert fill("{a} {b} {c}", {"a": "x", "b": {"k": 1}}) == 'x {"k": 1} {c}'
    assert TemplatePipeline("{a}", system="{b} {input}").placeholders() == {"a", "b", "input"}


def test_a_dev_set_objective_cannot_go_to_worker_processes(dev: Path) -> None:
    import pickle

    with pytest.raises(TypeError, match="threads"):
        pickle.dumps(evaluator(dev))

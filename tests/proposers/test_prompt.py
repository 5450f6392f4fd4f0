"""The ``prompt`` proposer with scripted models (an optimizer that writes what the test needs, a task model that
follows instructions the way a small model does), a real gateway, a real SQLite file and the real dev-set
evaluator: the pipeline as written first, OPRO's scored history best last, GEPA-style reflection on the
incumbent's misses, the no-feedback baseline, BO on the numbers around the best texts, repeats rejected on
record, and a replay of a recorded prompt-optimization run that reproduces it exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent import Float, Space, Text, create_study
from agent.errors import ConfigError
from agent.study import Study
from agent.testing.scripted import ScriptedClient, ScriptedRequest
from agent.trial import TrialState
from tests.tools.test_prompt_eval import REVIEWS, follows_instructions, write_jsonl
from tools.prompt_eval import DevSetEvaluator

START = "Read this."
TEMPLATE = "{instructions}\nReview: {input}\nSentiment:"


def candidate(instructions: str, why: str = "be precise", **numbers: float) -> str:
    return json.dumps({"candidates": [{"params": {"instructions": instructions, **numbers}, "rationale": why}]})


def writing(*texts: str):
    """An optimizer that writes ``texts`` in turn, then numbered variants of the last."""
    count = {"n": 0}

    def reply(request: ScriptedRequest) -> str:
        n = count["n"]
        count["n"] += 1
        return candidate(texts[n] if n < len(texts) else f"{texts[-1]} ({n})")

    return reply


def tuning(tmp_path: Path, optimizer: ScriptedClient, space: Space | None = None, name: str = "tune", **options):
    study = create_study(
        name,
        space or Space(instructions=Text(START)),
        direction="maximize",
        metric="exact_match",
        storage=f"sqlite:///{tmp_path / 'tune.db'}",
        proposer="prompt",
        model=optimizer,
        seed=5,
        context="label restaurant reviews",
        proposer_options=options,
    )
    return study


def dev_set(tmp_path: Path, task: ScriptedClient | None = None, minibatch: int = 0) -> DevSetEvaluator:
    task = task or ScriptedClient(default=follows_instructions, model="task")
    return DevSetEvaluator(
        write_jsonl(tmp_path / "dev.jsonl", REVIEWS), prompt=TEMPLATE, task_model=task, minibatch=minibatch
    )


def proposal_prompts(optimizer: ScriptedClient) -> list[str]:
    return [r.messages[-1]["content"] for r in optimizer.requests]


def test_the_pipeline_as_written_first_then_the_scored_history_best_last(tmp_path: Path) -> None:
    optimizer = ScriptedClient(default=writing("Say if it is good.", "Answer with one word: positive or negative."))
    study = tuning(tmp_path, optimizer, reflect=0.0)
    study.optimize(dev_set(tmp_path), n_trials=4)

    first, second, third, fourth = study.trials
    assert first.params["instructions"] == START and first.rationale == "the pipeline as written"
    assert second.proposer == "prompt" and second.parents == (0,) and second.llm_call_id is not None
    assert third.value == 1.0 and study.best_trial.number == 2
    diff = study.artifact(second, "diff").decode()
    assert "\n-Read this.\n" in diff and "\n+Say if it is good.\n" in diff
    last = proposal_prompts(optimizer)[-1]
    # OPRO: every candidate with its score, worst first, the best last; examples with their answers
    assert last.index('"Read this."') < last.index('"Answer with one word: positive or negative."')
    assert last.rstrip().endswith("scores higher than 1.")
    assert "exact_match: 1" in last and "expected answer: " in last and "Task: label restaurant reviews" in last
    assert fourth.state is TrialState.COMPLETE


def test_a_reflection_shows_the_incumbents_misses_with_the_task_models_answers(tmp_path: Path) -> None:
    optimizer = ScriptedClient(default=writing("Answer with one word."))
    study = tuning(tmp_path, optimizer, reflect=1.0, failures=2)
    study.optimize(dev_set(tmp_path), n_trials=2)

    [reflection] = proposal_prompts(optimizer)
    assert "It gets these dev examples wrong" in reflection
    assert reflection.count("the task model answered: Well, I would say this review is") == 2
    assert "expected answer: positive" in reflection and '"Read this."' in reflection
    assert study.trials[1].rationale == "be precise (reflection on the best candidate's misses)"
    assert study.trials[1].value == 1.0


def test_without_feedback_the_model_sees_no_scores_and_no_misses(tmp_path: Path) -> None:
    optimizer = ScriptedClient(default=writing("Say it.", "Say it well."))
    study = tuning(tmp_path, optimizer, feedback=False, reflect=1.0)
    study.optimize(dev_set(tmp_path), n_trials=3)

    last = proposal_prompts(optimizer)[-1]
    assert "Candidates written so far" in last and '"Say it."' in last
    assert "exact_match" not in last and "wrong" not in last and "answered" not in last


def test_bo_tunes_the_numbers_around_the_best_texts(tmp_path: Path) -> None:
    optimizer = ScriptedClient(default=writing("Answer with one word: positive or negative."))
    space = Space(instructions=Text(START), temperature=Float(0.0, 1.0))
    study = tuning(tmp_path, optimizer, space=space, numeric=1.0)
    study.enqueue({"instructions": "Answer with one word: positive or negative.", "temperature": 0.5})
    study.optimize(dev_set(tmp_path), n_trials=5)

    later = study.trials[2:]
    assert all(t.proposer == "bo" for t in later)  # numeric = 1: every proposal after the baseline is BO's
    best_text = study.best_trial.params["instructions"]
    assert all(t.params["instructions"] == best_text for t in later)
    assert len({t.params["temperature"] for t in later} | {0.5}) == len(later) + 1  # new numbers each time
    assert all(t.rationale == "BO tunes the numbers around the best texts" for t in later)


def test_a_repeated_or_invalid_candidate_costs_no_evaluation_and_is_on_record(tmp_path: Path) -> None:
    optimizer = ScriptedClient([candidate(START), '{"candidates": [{"params": {"instructions": 3}}]}'])
    study = tuning(tmp_path, optimizer, attempts=2)
    study.optimize(dev_set(tmp_path), n_trials=2)

    calls = study.llm_calls
    proposing = [c for c in calls if c.purpose == "propose"]
    assert [c.error for c in proposing] == [
        "the reply repeats a candidate already tried",
        "no valid candidate in the reply: candidate 1: instructions: 3 is not a string",
    ]
    second = study.trials[1]  # the partner, with the best texts, after two attempts
    assert second.proposer == "bo" and "the model gave no new candidate" in (second.rationale or "")


def test_a_space_without_text_is_refused_when_the_study_is_created(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match='"prompt" proposer writes Text parameters'):
        tuning(tmp_path, ScriptedClient(), space=Space(x=Float(0, 1)))


def run_recorded(tmp_path: Path, name: str, optimizer, task) -> Study:
    study = tuning(tmp_path, optimizer, name=name, reflect=0.5)
    study.optimize(dev_set(tmp_path, task, minibatch=3), n_trials=6)
    return study


def test_a_replay_reproduces_a_recorded_prompt_optimization_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    texts = ["Say if it is good.", "Answer with one word.", "One word, positive or negative.", "Label it."]
    recorded = run_recorded(
        tmp_path,
        "recorded",
        ScriptedClient(default=writing(*texts)),
        ScriptedClient(default=follows_instructions, model="task"),
    )
    assert {t.state for t in recorded.trials} >= {TrialState.COMPLETE, TrialState.PRUNED}

    replayed = run_recorded(tmp_path, "replayed", "replay:recorded", "replay:recorded")

    def outline(study: Study) -> list[tuple]:
        return [(t.params["instructions"], t.state, t.value, t.proposer, t.parents) for t in study.trials]

    assert outline(replayed) == outline(recorded)
    asked = [(c.purpose, c.messages) for c in replayed.llm_calls]
    assert sorted(asked, key=str) == sorted(((c.purpose, c.messages) for c in recorded.llm_calls), key=str)
    assert not [r for r in caplog.records if "different question" in r.getMessage()]

"""Steering a live study: events narrow, pin and annotate the space every proposer searches."""

from __future__ import annotations

from pathlib import Path

import pytest

import agent
from agent import Categorical, Float, Int, Space, load_study
from agent.steering import SteeringError
from agent.testing.scripted import ScriptedClient, schema_reply
from tests.cli.helpers import tunesmith

SPACE = Space(x=Float(-2.0, 2.0), n=Int(1, 8), kind=Categorical(["a", "b", "c"]))


def objective(params: dict) -> float:
    return (params["x"] - 0.5) ** 2 + params["n"] + (params["kind"] == "b")


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'study.db'}"


@pytest.mark.parametrize("proposer", ["random", "bo"])
def test_every_trial_after_a_narrowing_stays_inside_it(url: str, proposer: str) -> None:
    study = agent.create_study("s", SPACE, storage=url, proposer=proposer, seed=0)
    study.optimize(objective, n_trials=8)
    study.narrow("x", 1.0, 1.5)
    study.narrow("n", 2, 3)
    study.optimize(objective, n_trials=6)
    later = study.trials[8:]
    assert len(later) == 6 and all(t.proposer == proposer for t in later)
    assert all(1.0 <= t.params["x"] <= 1.5 and 2 <= t.params["n"] <= 3 for t in later)
    assert len(study.trials) == 14, "trials outside the narrowed space stay in the history"
    assert study.current_space["x"] == Float(1.0, 1.5) and study.space["x"] == Float(-2.0, 2.0)


def test_fix_then_free(url: str) -> None:
    study = agent.create_study("s", SPACE, storage=url, proposer="random", seed=1)
    study.fix("kind", "c")
    assert study.pinned == {"kind": "c"} and "kind" not in study.current_space
    study.optimize(objective, n_trials=5)
    assert {t.params["kind"] for t in study.trials} == {"c"}
    study.free("kind")
    assert study.pinned == {} and "kind" in study.current_space
    study.optimize(objective, n_trials=20)
    assert {t.params["kind"] for t in study.trials[5:]} == {"a", "b", "c"}


def test_choices_added_and_removed_are_respected(url: str) -> None:
    study = agent.create_study("s", SPACE, storage=url, proposer="random", seed=2)
    study.remove_choice("kind", "a")
    study.remove_choice("kind", "b")
    study.add_choice("kind", "d")
    assert study.current_space["kind"] == Categorical(["c", "d"])
    study.optimize(objective, n_trials=12)
    assert {t.params["kind"] for t in study.trials} == {"c", "d"}


def test_undo_restores_and_keeps_the_event(url: str) -> None:
    study = agent.create_study("s", SPACE, storage=url, proposer="random")
    study.narrow("x", 0.0, 0.5)
    study.fix("n", 4)
    undone = study.undo()
    assert undone is not None and undone.kind == "fix" and study.pinned == {}
    assert study.current_space["x"] == Float(0.0, 0.5)
    assert study.undo() is not None and study.current_space == SPACE
    assert study.undo() is None
    assert [e.kind for e in study.events] == ["narrow", "fix"] and not any(e.active for e in study.events)


def test_notes_reach_the_llm_prompt(url: str) -> None:
    client = ScriptedClient(default=schema_reply())
    study = agent.create_study(
        "s", SPACE, storage=url, proposer="llm", model=client, proposer_options={"batch_size": 1}
    )
    study.note("x above 1 diverges")
    study.optimize(objective, n_trials=1)
    prompt = "\n".join(m["content"] for m in client.requests[-1].messages)
    assert "Notes from the user" in prompt and "x above 1 diverges" in prompt
    assert study.notes == ("x above 1 diverges",)


def test_the_llm_prompt_shows_the_current_space(url: str) -> None:
    client = ScriptedClient(default=schema_reply())
    study = agent.create_study(
        "s", SPACE, storage=url, proposer="llm", model=client, proposer_options={"batch_size": 1}
    )
    study.narrow("x", 0.25, 0.75)
    study.fix("kind", "a")
    study.optimize(objective, n_trials=2)
    assert all(0.25 <= t.params["x"] <= 0.75 and t.params["kind"] == "a" for t in study.trials)
    prompt = "\n".join(m["content"] for m in client.requests[-1].messages)
    assert "0.25" in prompt and "0.75" in prompt


def test_events_survive_reopening_and_are_seen_by_another_study_object(url: str) -> None:
    study = agent.create_study("s", SPACE, storage=url, proposer="random", seed=3)
    other = load_study("s", url)
    study.narrow("x", 0.0, 1.0, author="ann")
    study.note("keep n small")
    assert other.current_space["x"] == Float(0.0, 1.0) and other.notes == ("keep n small",)
    other.optimize(objective, n_trials=5)
    assert all(0.0 <= t.params["x"] <= 1.0 for t in other.trials)
    study.close()
    other.close()
    reopened = load_study("s", url)
    assert [(e.kind, e.author) for e in reopened.events] == [("narrow", "ann"), ("note", "api")]


@pytest.mark.parametrize(
    ("steer", "message"),
    [
        (lambda s: s.narrow("x", -3.0, 1.0), "x: .*not inside the study's range"),
        (lambda s: s.narrow("x", 1.0, 0.5), "x: low .* must be below high"),
        (lambda s: s.narrow("kind", 0, 1), "kind: is categorical; only float and int"),
        (lambda s: s.narrow("n", 1.5, 3), "n: is an int parameter"),
        (lambda s: s.narrow("nope", 0, 1), "nope: not a parameter of this study"),
        (lambda s: s.fix("n", 9), "n: cannot be pinned at 9"),
        (lambda s: s.free("x"), "x: is not pinned"),
        (lambda s: s.add_choice("kind", "a"), "kind: 'a' is already a choice"),
        (lambda s: s.remove_choice("kind", "z"), "kind: 'z' is not a choice"),
        (lambda s: s.add_choice("x", "a"), "x: is float; only categorical"),
        (lambda s: s.note("  "), "note: a note needs some text"),
    ],
)
def test_bad_steering_is_refused_with_the_fix_and_not_stored(url: str, steer, message: str) -> None:
    study = agent.create_study("s", SPACE, storage=url, proposer="random")
    with pytest.raises(SteeringError, match=message):
        steer(study)
    assert study.events == []


def test_the_last_choice_cannot_be_removed(url: str) -> None:
    study = agent.create_study("s", Space(k=Categorical(["a", "b"])), storage=url, proposer="random")
    study.remove_choice("k", "a")
    with pytest.raises(SteeringError, match="k: 'b' is the last choice"):
        study.remove_choice("k", "b")


def test_status_and_show_print_the_steering(tmp_path: Path, url: str) -> None:
    study = agent.create_study("s", SPACE, storage=url, proposer="random", seed=4)
    study.optimize(objective, n_trials=1)
    study.narrow("x", 0.0, 1.0)
    study.fix("n", 3)
    study.note("small n is better")
    study.optimize(objective, n_trials=1)
    study.close()
    status = tunesmith("status", "s", "--storage", url, cwd=tmp_path)
    assert status.code == 0, status.stderr
    assert "Steering" in status.stdout and "x narrowed to [0.0, 1.0]" in status.stdout
    assert "n pinned at 3" in status.stdout and "note: small n is better" in status.stdout
    before = tunesmith("show", "s", "0", "--storage", url, cwd=tmp_path)
    after = tunesmith("show", "s", "1", "--storage", url, cwd=tmp_path)
    assert before.code == after.code == 0, before.stderr + after.stderr
    assert "narrowed" not in before.stdout and "x narrowed to [0.0, 1.0]" in after.stdout


def test_an_event_that_no_longer_applies_is_skipped_not_fatal(url: str) -> None:
    study = agent.create_study("s", SPACE, storage=url, proposer="random", seed=5)
    study.storage.add_event(study.id, "free", {"name": "x"}, "racer")  # as if two processes raced
    study.narrow("x", 0.0, 1.0)
    study.optimize(objective, n_trials=3)
    assert all(0.0 <= t.params["x"] <= 1.0 for t in study.trials)


def test_a_proposal_prepared_before_a_narrowing_is_not_used(url: str) -> None:
    study = agent.create_study("s", SPACE, storage=url, proposer="random", seed=4)
    study.prefetch = True  # what optimize does with a model or several workers
    first = study.ask()
    assert study._prepared is not None
    prepared, _ = study._prepared.result(timeout=30)
    low, high = (0.5, 1.0) if prepared.params["x"] < 0.5 else (-1.0, -0.5)  # a range the prepared one is outside
    study.narrow("x", low, high)
    second = study.ask(last=True)
    study.tell(first, 1.0)
    study.tell(second, 1.0)
    assert low <= second.params["x"] <= high


def test_a_surrogate_fits_only_the_trials_at_the_pinned_value(url: str) -> None:
    from agent.proposers import StudyView

    study = agent.create_study("s", SPACE, storage=url, proposer="random", seed=5)
    study.optimize(objective, n_trials=10)
    study.fix("kind", "a")
    steering = study.steering
    view = StudyView(steering.current_space, "minimize", study.trials, pinned=steering.pinned).inside_space()
    expected = [t.number for t in study.trials if t.params["kind"] == "a"]
    assert 0 < len(expected) < 10 and [t.number for t in view.trials] == expected

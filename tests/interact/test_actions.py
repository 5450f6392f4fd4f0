"""The actions chat's commands, chat's model and the MCP tools share, on a real SQLite study."""

from __future__ import annotations

from pathlib import Path

import pytest

import agent
from agent import Categorical, Float, Int, Space
from agent.interact.actions import ACTIONS
from agent.interact.session import Session, SessionError
from agent.steering import SteeringError

SPACE = Space(x=Float(-2.0, 2.0), n=Int(1, 8), kind=Categorical(["a", "b"]))


@pytest.fixture
def session(tmp_path: Path) -> Session:
    study = agent.create_study("s", SPACE, storage=f"sqlite:///{tmp_path / 'study.db'}", proposer="random", seed=0)
    return Session(study, "tester", folder=tmp_path)


def act(session: Session, name: str, text: str = "") -> str:
    action = ACTIONS[name]
    return action.perform(session, action.parse(text)).text


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("narrow", "x -1 1.5", {"param": "x", "low": -1.0, "high": 1.5}),
        ("fix", "kind=b", {"param": "kind", "value": "b"}),
        ("fix", "n = 3", {"param": "n", "value": 3}),
        ("fix", 'kind="3"', {"param": "kind", "value": "3"}),  # quoted: the string, not the number
        ("enqueue", '{"x": 0.5, "n": 2, "kind": "a"}', {"params": {"x": 0.5, "n": 2, "kind": "a"}}),
        ("note", "  lr above 0.01 diverges  ", {"text": "lr above 0.01 diverges"}),
        ("trials", "", {"last": None}),
        ("trials", "3", {"last": 3}),
        ("report", "'my report.html'", {"path": "my report.html"}),
    ],
)
def test_slash_command_text_becomes_arguments(name: str, text: str, expected: dict) -> None:
    assert ACTIONS[name].parse(text).model_dump() == expected


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("narrow", "x", "low: missing; high: missing; usage: /narrow PARAM LOW HIGH"),
        ("narrow", "x a b", "low: Input should be a valid number"),
        ("narrow", "x 1 2 3", "expected at most 3 values, got 4"),
        ("fix", "kind", "expected PARAM=VALUE; usage: /fix PARAM=VALUE"),
        ("enqueue", "[1, 2]", 'expected a JSON object such as {"lr": 0.01}'),
        ("enqueue", "{x: 1}", "Expecting property name"),
        ("run", "0", "trials: Input should be greater than or equal to 1"),
        ("trials", "-2", "last: Input should be greater than or equal to 1"),
        ("note", "", "text: missing"),
    ],
)
def test_bad_command_text_names_the_field_and_the_usage(name: str, text: str, message: str) -> None:
    with pytest.raises(SessionError, match="usage: " + ACTIONS[name].usage.replace("[", r"\[")) as raised:
        ACTIONS[name].parse(text)
    assert message in str(raised.value)


def test_json_arguments_are_validated_with_the_field_named() -> None:
    with pytest.raises(SessionError, match=r"narrow: high: missing; extra: Extra inputs are not permitted"):
        ACTIONS["narrow"].validate({"param": "x", "low": 0, "extra": 1})
    assert ACTIONS["narrow"].schema["required"] == ["param", "low", "high"]


def test_steering_actions_store_events_by_their_author_and_undo_takes_the_newest(session: Session) -> None:
    assert act(session, "narrow", "n 2 4") == "Done: n narrowed to [2, 4]. Proposals follow it from now on.\n"
    act(session, "fix", "kind=b")
    act(session, "note", "x near 1 looks good")
    space = act(session, "space")
    assert "n: integer in [2, 4] (steered; stored: integer in [1, 8])" in space
    assert "kind: pinned at 'b'" in space and "Note: x near 1 looks good" in space
    assert [(e.kind, e.author) for e in session.study.events] == [(k, "tester") for k in ("narrow", "fix", "note")]
    assert isinstance(session.study.steering.space["n"].low, int), "an int parameter's bounds stay ints"
    assert act(session, "undo") == "Undone: note: x near 1 looks good.\n"
    act(session, "free", "kind")
    act(session, "remove_choice", "kind=a")
    act(session, "add_choice", "kind=c")
    assert session.study.current_space["kind"] == Categorical(["b", "c"])
    with pytest.raises(SteeringError, match="y: not a parameter of this study"):
        act(session, "fix", "y=1")


def test_reading_actions_and_their_errors(session: Session) -> None:
    with pytest.raises(SessionError, match="no complete trial"):
        act(session, "best")
    assert act(session, "trials") == "s: no trials yet.\n"
    with pytest.raises(SessionError, match="has no trial 0 \\(it has no trials yet\\)"):
        act(session, "show", "0")
    session.study.optimize(lambda p: p["x"] ** 2, n_trials=3)
    best = ACTIONS["best"].perform(session, ACTIONS["best"].parse(""))
    assert best.text.startswith(f"Best trial #{best.data['number']}: value ") and best.data["params"]
    table = ACTIONS["trials"].perform(session, ACTIONS["trials"].parse("2"))
    assert [row["number"] for row in table.data] == [1, 2] and "s: 2 trials" in table.text
    assert "Trial 1 of s: complete" in act(session, "show", "1")
    assert "s (minimize): 3 trials (3 complete)" in act(session, "status")


def test_enqueue_and_report(session: Session, tmp_path: Path) -> None:
    assert "(1 waiting)" in act(session, "enqueue", '{"x": 0.25, "n": 2, "kind": "a"}')
    session.study.optimize(lambda p: p["x"] ** 2, n_trials=2)
    assert session.study.trials[0].params == {"x": 0.25, "n": 2, "kind": "a"}
    from agent.errors import TunesmithError

    with pytest.raises(TunesmithError, match="x"):
        act(session, "enqueue", '{"x": 9}')
    said = act(session, "report", "out/r.html")
    assert said.startswith(f"Wrote {tmp_path / 'out' / 'r.html'} (") and (tmp_path / "out" / "r.html").is_file()


def test_a_study_opened_by_name_cannot_run_and_says_how_to(session: Session) -> None:
    with pytest.raises(SessionError, match=r"opened by name, so its objective is unknown.*tunesmith chat JOB.toml"):
        act(session, "run", "2")

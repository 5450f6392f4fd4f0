"""How numbers, parameters and trials are shown (agent/display.py): one form for logs, the CLI and errors."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import pytest

from agent.display import failure_cause, number, short_params, space_changes, trial_line, value_text
from agent.space import Categorical, Code, Float, Int, Space, Text
from agent.trial import Trial, TrialState
from tools.command import CommandEvaluator

START = datetime(2025, 1, 1, tzinfo=UTC)


def finished(
    state: TrialState = TrialState.COMPLETE,
    seconds: float = 2.1,
    **fields: object,
) -> Trial:
    values: dict = {"number": 3, "params": {"lr": 0.001, "depth": 3}, "proposer": "bo", **fields}
    return Trial(state=state, started_at=START, finished_at=START + timedelta(seconds=seconds), **values)


@pytest.mark.parametrize(
    ("x", "shown"),
    [
        (0.49999999999999994, "0.5"),
        (1234567.0, "1.23457e+06"),
        (1234567, "1234567"),
        (2.0, "2"),
        (-0.000123456789, "-0.000123457"),
        (None, "-"),
        (True, "True"),
    ],
)
def test_numbers_have_six_significant_digits_and_integers_stay_whole(x: float | int | None, shown: str) -> None:
    assert number(x) == shown


def test_values_are_readable_on_one_line() -> None:
    assert value_text("adam") == "adam"
    assert value_text("be brief") == '"be brief"'  # quoted: a=x b=y must stay unambiguous
    assert value_text('say "hi"') == '"say \\"hi\\""'
    assert value_text(0.1 + 0.2) == "0.3"
    program = "def f(x):\n    return x * 2\n" * 5
    shown = value_text(program)
    assert shown.startswith('"def f(x):⏎    return') and shown.endswith('..."') and len(shown) == 40
    assert "\n" not in value_text("a\tb\x00c\n") and value_text("a\x00") == '"a\\x00"'


def test_short_params_are_cut_to_the_limit() -> None:
    params = {"lr": 0.0010000000000000002, "depth": 3, "optimizer": "adam"}
    assert short_params(params) == "lr=0.001 depth=3 optimizer=adam"
    cut = short_params({f"p{i}": i / 7 for i in range(20)}, limit=30)
    assert len(cut) == 30 and cut.endswith("...")


def test_a_complete_trial_shows_its_value_proposer_and_time() -> None:
    trial = finished(value=0.93400000000000001)
    assert trial_line(trial) == "trial 3 complete  0.934 (bo, 2.1 s)  lr=0.001 depth=3"
    assert failure_cause(trial) is None


def test_a_failed_trial_shows_its_error_first_line() -> None:
    trial = finished(TrialState.FAILED, 0.3, error="NameError: name 'foo' is not defined\nmore", feedback="Traceback")
    assert failure_cause(trial) == "NameError: name 'foo' is not defined"
    assert trial_line(trial) == "trial 3 failed: NameError: name 'foo' is not defined (bo, 0.30 s)  lr=0.001 depth=3"


def test_a_command_that_exited_shows_the_last_line_it_printed() -> None:
    # A real command: what the user sees must be what Python printed, not only "exited with status 1".
    evaluation = CommandEvaluator([sys.executable, "-c", "import sklearn_not_installed_here"]).evaluate(
        {}, finished(TrialState.RUNNING)
    )
    trial = finished(TrialState.FAILED, 0.3, error=evaluation.error, feedback=evaluation.feedback)
    expected = "the command exited with status 1: ModuleNotFoundError: No module named 'sklearn_not_installed_here'"
    assert failure_cause(trial) == expected
    assert trial_line(trial).startswith(f"trial 3 failed: {expected} (bo, 0.30 s)  lr=")


def test_interrupted_pruned_and_running_trials() -> None:
    interrupted = finished(TrialState.FAILED, error="interrupted", interrupted=True)
    assert failure_cause(interrupted) is None
    assert trial_line(interrupted) == "trial 3 interrupted (bo, 2.1 s)  lr=0.001 depth=3"
    assert trial_line(finished(TrialState.PRUNED, 12.4)) == "trial 3 pruned (bo, 12 s)  lr=0.001 depth=3"
    why = finished(TrialState.PRUNED, 1.0, feedback="0.25 on a minibatch of 8, the best has 0.5 there\n3 of 8 missed")
    assert (
        trial_line(why)
        == "trial 3 pruned: 0.25 on a minibatch of 8, the best has 0.5 there (bo, 1.0 s)  lr=0.001 depth=3"
    )
    running = Trial(number=4, params={"x": 1}, state=TrialState.RUNNING, proposer="llm", started_at=START)
    assert trial_line(running) == "trial 4 running (llm)  x=1"


def test_space_changes_name_each_parameter() -> None:
    stored = Space(x=Float(0, 1), prompt=Text("Be brief."), code=Code("pass"), kind=Categorical(["a", "b"]))
    now = Space(x=Float(0, 1, log=False), prompt=Text("Be short.", max_length=50), n=Int(1, 4))
    assert space_changes(stored, stored) == []
    assert space_changes(stored, now) == [
        "prompt: stored text no max_length, now text max_length=50",
        "code: removed (was code language=python)",
        "kind: removed (was categorical [a, b])",
        "n: added (int [1, 4] log=False step=1)",
    ]
    # where a search starts is no change of what is searched: a reworded prompt, an edited program
    assert space_changes(stored, Space(x=Float(0, 1), prompt=Text("Be short."), code=Code("x = 1"), kind=now["x"])) == [
        "kind: stored categorical [a, b] no log, now float [0, 1] log=False"
    ]

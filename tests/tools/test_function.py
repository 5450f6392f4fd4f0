"""FunctionEvaluator (in process and in a child process with a timeout) and read_outcome."""

from __future__ import annotations

import math
import os
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.trial import Trial
from tests.tools.conftest import make_trial
from tests.tools.test_command import _is_gone, _wait_gone
from tools.evaluation import Evaluation, ObjectiveOutputError, read_outcome
from tools.function import FunctionEvaluator, resolve_callable

SLOW = "tests.tools.slow_objectives"


def write_module(folder: Path, name: str, body: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(textwrap.dedent(body))


# In process ---------------------------------------------------------------------------------------------
def test_a_number_is_returned_as_is(trial: Trial) -> None:
    assert FunctionEvaluator(lambda p: p["x"] ** 2).evaluate({"x": 3.0}, trial) == Evaluation(9.0)


def test_an_exception_is_a_failed_evaluation_with_the_traceback(trial: Trial) -> None:
    def objective(params: dict[str, Any]) -> float:
        raise ValueError(f"lr {params['lr']} diverged")

    evaluation = FunctionEvaluator(objective).evaluate({"lr": 0.5}, trial)
    assert evaluation.output is None
    assert evaluation.error == "ValueError: lr 0.5 diverged"
    assert evaluation.feedback is not None
    assert evaluation.feedback.startswith("Traceback (most recent call last):")
    assert 'raise ValueError(f"lr {params' in evaluation.feedback
    assert evaluation.feedback.rstrip().endswith("ValueError: lr 0.5 diverged")


def test_the_params_passed_are_a_copy(trial: Trial) -> None:
    params = {"x": 1}

    def objective(p: dict[str, Any]) -> float:
        p["x"] = 99
        return 0.0

    FunctionEvaluator(objective).evaluate(params, trial)
    assert params == {"x": 1}


def test_an_objective_taking_params_and_trial_gets_the_trial(trial: Trial) -> None:
    seen: list[Any] = []

    def two_args(params: dict[str, Any], t: Trial) -> float:
        seen.append(t)
        return 1.0

    def one_arg(params: dict[str, Any], *, scale: float = 1.0) -> float:
        seen.append(params)
        return scale

    assert FunctionEvaluator(two_args).evaluate({"x": 1}, trial).output == 1.0
    assert seen == [trial]
    assert FunctionEvaluator(one_arg).evaluate({"x": 1}, trial).output == 1.0
    assert seen[1] == {"x": 1}


def test_module_callable_spec(trial: Trial) -> None:
    evaluator = FunctionEvaluator(f"{SLOW}:fast")
    evaluation = evaluator.evaluate({"x": 2}, trial)
    assert evaluation.output == {"double": 4.0, "pid": float(os.getpid())}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_colon", 'expected "module:callable" (e.g. "train:objective"), got \'no_colon\''),
        (":fn", 'expected "module:callable" (e.g. "train:objective"), got \':fn\''),
        ("mod:", 'expected "module:callable" (e.g. "train:objective"), got \'mod:\''),
        (
            "tunesmith_no_such_module_xyz:f",
            "cannot import module 'tunesmith_no_such_module_xyz': No module named 'tunesmith_no_such_module_xyz'",
        ),
        (f"{SLOW}:nope", f"module '{SLOW}' has no attribute 'nope'"),
        (f"{SLOW}:os", f"'{SLOW}:os' is not callable"),
    ],
)
def test_resolve_callable_errors(spec: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        resolve_callable(spec)
    assert str(info.value) == message


def test_base_dir_is_searched_first(tmp_path: Path, trial: Trial, clean_imports: None) -> None:
    name = f"tsobj_{uuid.uuid4().hex[:8]}"
    write_module(tmp_path, name, "def objective(params):\n    return params['x'] + 1\n")
    assert FunctionEvaluator(f"{name}:objective", base_dir=tmp_path).evaluate({"x": 1}, trial).output == 2


def test_same_module_name_in_two_job_folders(tmp_path: Path, trial: Trial, clean_imports: None) -> None:
    # Two job files, each beside its own train.py: the second must not silently run the first one's code
    # (today the first import stays in sys.modules and wins).
    name = f"tsobj_{uuid.uuid4().hex[:8]}"
    write_module(tmp_path / "a", name, "def objective(params):\n    return 1.0\n")
    write_module(tmp_path / "b", name, "def objective(params):\n    return 2.0\n")
    first = FunctionEvaluator(f"{name}:objective", base_dir=tmp_path / "a")
    second = FunctionEvaluator(f"{name}:objective", base_dir=tmp_path / "b")
    assert first.evaluate({}, trial).output == 1.0
    assert second.evaluate({}, trial).output == 2.0


# In a child process (timeout) ---------------------------------------------------------------------------
def test_a_fast_objective_returns_through_the_child(trial: Trial) -> None:
    evaluation = FunctionEvaluator(f"{SLOW}:fast", timeout=30).evaluate({"x": 2.5}, trial)
    assert evaluation.error is None, evaluation
    assert isinstance(evaluation.output, dict)
    assert evaluation.output["double"] == 5.0
    assert evaluation.output["pid"] != os.getpid(), "with a timeout the objective must run in a child process"


def test_a_module_level_function_object_works_with_a_timeout() -> None:
    from tests.tools.slow_objectives import with_trial

    evaluation = FunctionEvaluator(with_trial, timeout="30s").evaluate({"x": 0.5}, make_trial(4))
    assert evaluation == Evaluation(4.5)


@pytest.mark.slow
def test_a_sleeping_objective_is_killed_after_the_timeout(trial: Trial) -> None:
    started = time.monotonic()
    evaluation = FunctionEvaluator(f"{SLOW}:sleepy", timeout=1.5).evaluate({"seconds": 60}, trial)
    elapsed = time.monotonic() - started
    assert evaluation == Evaluation(None, error="timed out after 1.5s")
    assert elapsed < 10, f"evaluate took {elapsed:.1f}s"


@pytest.mark.slow
def test_the_timeout_kills_what_the_objective_started(tmp_path: Path, trial: Trial) -> None:
    pid_file = tmp_path / "child.pid"
    evaluator = FunctionEvaluator(f"{SLOW}:sleepy_with_child", timeout=2)
    started = time.monotonic()
    evaluation = evaluator.evaluate({"pid_file": str(pid_file)}, trial)
    assert evaluation.error == "timed out after 2s"
    assert time.monotonic() - started < 12
    child_pid = int(pid_file.read_text())
    try:
        assert _wait_gone(child_pid), f"the objective's child {child_pid} survived the timeout"
    finally:
        if not _is_gone(child_pid):
            os.kill(child_pid, 9)


def test_timeout_with_a_module_from_base_dir(tmp_path: Path, trial: Trial, clean_imports: None) -> None:
    name = f"tsobj_{uuid.uuid4().hex[:8]}"
    write_module(
        tmp_path,
        name,
        """
        import time

        def nap(params):
            time.sleep(params["seconds"])
            return {"loss": params["seconds"]}
        """,
    )
    evaluator = FunctionEvaluator(f"{name}:nap", timeout=30, base_dir=tmp_path)
    assert evaluator.evaluate({"seconds": 0.01}, trial) == Evaluation({"loss": 0.01})


def test_an_exception_in_the_child_is_reported_like_in_process(trial: Trial) -> None:
    evaluation = FunctionEvaluator(f"{SLOW}:raises", timeout=30).evaluate({"lr": 0.1}, trial)
    assert evaluation.output is None
    assert evaluation.error == "ValueError: bad lr 0.1"
    assert evaluation.feedback is not None
    assert "Traceback (most recent call last):" in evaluation.feedback
    assert "slow_objectives.py" in evaluation.feedback


def test_a_child_that_dies_without_answering(trial: Trial) -> None:
    evaluation = FunctionEvaluator(f"{SLOW}:dies", timeout=30).evaluate({}, trial)
    assert evaluation == Evaluation(None, error="the objective's process died (exit code 3)")


def test_a_lambda_with_a_timeout_says_it_must_be_importable(trial: Trial) -> None:
    started = time.monotonic()
    evaluation = FunctionEvaluator(lambda p: 1.0, timeout=5).evaluate({}, trial)
    assert time.monotonic() - started < 5
    assert evaluation.output is None
    assert evaluation.error is not None
    assert evaluation.error.startswith("cannot start the objective in a child process (")
    assert evaluation.error.endswith('with a timeout the objective must be importable, e.g. "module:callable"')


# read_outcome --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("output", "metric", "message"),
    [
        (math.nan, None, "the objective's result is nan, not a finite number"),
        (math.inf, None, "the objective's result is inf, not a finite number"),
        (-math.inf, "loss", "the objective's result is -inf, not a finite number"),
        ("0.93", None, "the objective's result is str '0.93', not a number"),
        (True, None, "the objective's result is bool True, not a number"),
        (False, "acc", "the objective's result is bool False, not a number"),
        ([0.5], None, "the objective's result is list [0.5], not a number"),
        ({"loss": 1.0}, "accuracy", "the objective's result has no 'accuracy' (it has: loss)"),
        ({}, "accuracy", 'the objective returned an empty dict; return a number or e.g. {"loss": 0.1}'),
        (
            {"accuracy": 0.9, "latency_ms": 12},
            None,
            "the objective returned several metrics (accuracy, latency_ms); "
            "set the study's metric to the one to optimize",
        ),
        ({"loss": math.nan}, "loss", "metric 'loss' is nan, not a finite number"),
        ({"loss": "low"}, None, "metric 'loss' is str 'low', not a number"),
        ({"loss": None}, "loss", "metric 'loss' is NoneType None, not a number"),
        ({"ok": True}, None, "metric 'ok' is bool True, not a number"),
    ],
)
def test_read_outcome_refuses(output: object, metric: str | None, message: str) -> None:
    with pytest.raises(ObjectiveOutputError) as info:
        read_outcome(output, metric)
    assert str(info.value) == message


def test_read_outcome_refuses_none() -> None:
    with pytest.raises(ObjectiveOutputError, match="None") as info:
        read_outcome(None, None)
    assert str(info.value) == (
        "the objective returned None; return a number or a dict of metrics (a missing return statement?)"
    )


def test_read_outcome_of_an_empty_dict_does_not_speak_of_several_metrics() -> None:
    with pytest.raises(ObjectiveOutputError) as info:
        read_outcome({}, None)
    assert "several" not in str(info.value), str(info.value)


@pytest.mark.parametrize(
    ("output", "metric", "expected"),
    [
        (0.5, None, (0.5, {})),
        (3, "loss", (3.0, {"loss": 3.0})),
        (np.float32(0.25), None, (0.25, {})),
        (np.int64(2), None, (2.0, {})),
        ({"loss": 0.5}, None, (0.5, {"loss": 0.5})),
        (
            {"acc": 0.9, "latency_ms": 12, "note": "text", "bad": math.nan, "flag": True},
            "acc",
            (0.9, {"acc": 0.9, "latency_ms": 12.0}),
        ),
    ],
)
def test_read_outcome_accepts(output: object, metric: str | None, expected: tuple[float, dict[str, float]]) -> None:
    value, metrics = read_outcome(output, metric)
    assert (value, metrics) == expected
    assert type(value) is float

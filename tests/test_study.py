"""The study loop through the public API, on real SQLite files."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import pandas
import pytest

import agent
from agent import (
    Budget,
    Categorical,
    Float,
    Int,
    InvalidCandidate,
    Space,
    StorageError,
    TrialState,
    load_study,
)
from agent.budget import parse_duration

# The loop is what these tests are about: the cheap random proposer keeps them fast (BO has its own tests).
create_study = partial(agent.create_study, proposer="random")

SPACE = Space(x=Float(-2.0, 2.0), n=Int(1, 5), kind=Categorical(["a", "b"]))


def quadratic(params: dict) -> float:
    return (params["x"] - 0.5) ** 2 + params["n"] + (params["kind"] == "b")


@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'study.db'}"


def test_optimize_records_every_trial(url: str) -> None:
    study = create_study("q", SPACE, storage=url, seed=0)
    summary = study.optimize(quadratic, n_trials=12)
    assert summary.trials_run == 12 and summary.stopped_because == "n_trials"
    trials = load_study("q", url).trials
    assert [t.number for t in trials] == list(range(12))
    assert all(t.state is TrialState.COMPLETE and t.proposer == "random" for t in trials)
    assert study.best_value == min(t.value for t in trials)
    assert study.best_params == dict(study.best_trial.params)
    assert all(t.finished_at is not None and t.duration_s >= 0 for t in trials)


def test_failures_are_recorded_and_the_study_goes_on(url: str) -> None:
    outputs = iter([ValueError("bad luck"), math.nan, math.inf, "high", {"other": 1.0}, 3.0, {"loss": 2.0}])

    def objective(params: dict) -> object:
        out = next(outputs)
        if isinstance(out, Exception):
            raise out
        return out

    study = create_study("f", SPACE, storage=url, metric="loss")
    study.optimize(objective, n_trials=7)
    trials = study.trials
    assert [t.state.value for t in trials] == ["failed"] * 5 + ["complete"] * 2
    assert trials[0].error == "ValueError: bad luck" and "Traceback" in trials[0].feedback
    assert trials[1].error == "the objective's result is nan, not a finite number"
    assert trials[2].error == "the objective's result is inf, not a finite number"
    assert trials[3].error == "the objective's result is str 'high', not a number"
    assert trials[4].error == "the objective's result has no 'loss' (it has: other)"
    assert trials[5].metrics == {"loss": 3.0}
    assert study.best_value == 2.0


def test_ask_tell_and_metrics(url: str) -> None:
    study = create_study("at", SPACE, storage=url, direction="maximize", metric="acc")
    t0 = study.ask()
    assert t0.state is TrialState.RUNNING and SPACE.problems(t0.params) == []
    done = study.tell(t0, {"acc": 0.9, "latency_ms": 12})
    assert done.value == 0.9 and done.metrics == {"acc": 0.9, "latency_ms": 12.0}
    t1 = study.ask()
    failed = study.tell(t1, state="failed", error="OOM")
    assert failed.state is TrialState.FAILED and failed.error == "OOM"
    with pytest.raises(StorageError, match="already complete"):
        study.tell(t0, 0.1)
    assert study.best_trial.number == 0


def test_enqueued_points_come_first_and_are_validated(url: str) -> None:
    study = create_study("e", SPACE, storage=url)
    study.enqueue({"x": 0.5, "n": 1, "kind": "a"})
    study.enqueue({"x": 1.0, "n": 2, "kind": "b"})
    with pytest.raises(InvalidCandidate, match="n: 9 is above the maximum 5"):
        study.enqueue({"x": 0.0, "n": 9, "kind": "a"})
    study.optimize(quadratic, n_trials=3)
    trials = study.trials
    assert [t.proposer for t in trials] == ["enqueued", "enqueued", "random"]
    assert trials[0].params == {"x": 0.5, "n": 1, "kind": "a"} and trials[0].value == 1.0


def test_trial_budget_is_study_wide(url: str) -> None:
    study = create_study("b", SPACE, storage=url)
    assert study.optimize(quadratic, budget=Budget(trials=5)).trials_run == 5
    again = load_study("b", url).optimize(quadratic, budget=Budget(trials=8))
    assert again.stopped_because == "trial budget"
    assert len(study.trials) == 8


def test_wall_time_budget_stops_the_run(url: str) -> None:
    study = create_study("w", SPACE, storage=url)
    summary = study.optimize(quadratic, budget=Budget(wall_time=0.3))
    assert summary.stopped_because == "wall time" and summary.trials_run > 0


def test_parallel_workers_in_threads(url: str) -> None:
    study = create_study("p", SPACE, storage=url)
    study.optimize(quadratic, n_trials=16, workers=4)
    numbers = [t.number for t in study.trials]
    assert numbers == list(range(16))
    assert len({SPACE.key(t.params) for t in study.trials}) == 16


def test_threads_opening_a_new_study_at_once_all_get_it(tmp_path: Path) -> None:
    # The fault: 4 threads with load_if_exists=True on a new file, 7 of 160 raised "already exists".
    def open_race(url: str) -> agent.Study:
        return create_study("race", SPACE, storage=url, load_if_exists=True)

    for repeat in range(40):
        with ThreadPoolExecutor(4) as pool:
            studies = list(pool.map(open_race, [f"sqlite:///{tmp_path / f'race{repeat}.db'}"] * 4))
        assert len({study.id for study in studies}) == 1


def test_create_and_load_errors(url: str) -> None:
    create_study("s", SPACE, storage=url)
    with pytest.raises(StorageError, match="already exists"):
        create_study("s", SPACE, storage=url)
    with pytest.raises(ValueError, match="different space"):
        create_study("s", Space(x=Float(0, 1)), storage=url, load_if_exists=True)
    assert create_study("s", SPACE, storage=url, load_if_exists=True).name == "s"
    resumed = create_study("s", SPACE, storage=url, load_if_exists=True, proposer="bo", seed=4, context="new")
    assert (resumed.proposer_kind, resumed.seed, resumed.context) == ("bo", 4, "new")
    assert load_study("s", url).proposer_kind == "bo"
    with pytest.raises(StorageError, match=r"no study named 'nope' .*studies there: s"):
        load_study("nope", url)
    with pytest.raises(ValueError, match=r"^direction: Input should be .minimize. or .maximize., got .up.$"):
        create_study("d", SPACE, storage=url, direction="up")
    with pytest.raises(ValueError, match=r"^proposer: expected one of .*, got .magic.$"):
        create_study("m", SPACE, storage=url, proposer="magic")
    with pytest.raises(ValueError, match="would never stop"):
        load_study("s", url).optimize(quadratic)


def test_a_changed_space_names_each_differing_parameter(url: str) -> None:
    create_study("sp", Space(x=Float(0, 1), n=Int(1, 5), kind=Categorical(["a", "b"])), storage=url)
    changed = Space(x=Float(0, 2), n=Int(1, 5, step=2), lr=Float(1e-5, 0.1, log=True))
    with pytest.raises(ValueError) as caught:
        create_study("sp", changed, storage=url, direction="maximize", load_if_exists=True)
    assert str(caught.value) == (
        "study 'sp' exists with a different space (x: stored float [0, 1], now float [0, 2]; "
        "n: stored int [1, 5] step=1, now int [1, 5] step=2; kind: removed (was categorical [a, b]); "
        "lr: added (float [1e-05, 0.1] log=True)), direction (stored: minimize); give the new study another name"
    )


def test_to_dataframe(url: str) -> None:
    study = create_study("df", SPACE, storage=url)
    study.optimize(quadratic, n_trials=3)
    frame = study.to_dataframe()
    assert isinstance(frame, pandas.DataFrame) and len(frame) == 3
    assert {"number", "state", "value", "params_x", "params_n", "params_kind", "proposer"} <= set(frame.columns)


def test_budget_parsing() -> None:
    assert parse_duration("90s") == 90 and parse_duration("1h30m") == 5400 and parse_duration(2.5) == 2.5
    assert Budget(wall_time="30m").wall_time_s == 1800
    for bad in ("soon", "-5s", 0, True):
        with pytest.raises(ValueError):
            parse_duration(bad)
    with pytest.raises(ValueError, match="positive integer"):
        Budget(trials=0)


def test_a_study_in_memory_runs_the_same_loop() -> None:
    study = create_study("mem", SPACE, storage="memory:", seed=0)
    assert study.optimize(quadratic, n_trials=6, workers=2).trials_run == 6
    assert [t.number for t in study.trials] == list(range(6))
    assert study.best_value == min(quadratic(dict(t.params)) for t in study.trials)
    assert type(study.storage).__name__ == "InMemoryStorage"


def test_trials_carry_reports_attributes_and_artifacts(url: str) -> None:
    study = create_study("extras", SPACE, storage=url, seed=0)
    trial = study.ask()
    study.report(trial, 1, 0.9)
    study.set_user_attr(trial, "note", "first")
    digest = study.add_artifact(trial, "program", "print(1)\n")
    study.tell(trial, 0.5)
    [again] = load_study("extras", url).trials
    assert again.intermediate == ((1, 0.9),) and dict(again.user_attrs) == {"note": "first"}
    assert dict(again.artifacts) == {"program": digest}
    assert load_study("extras", url).artifact(0, "program") == b"print(1)\n"
    with pytest.raises(KeyError, match="no artifact 'stdout'"):
        study.artifact(0, "stdout")


def test_a_spent_trial_budget_is_refused_before_the_model_is_asked(tmp_path: Path) -> None:
    from agent.storage import TrialBudgetReached
    from agent.testing.scripted import ScriptedClient, schema_reply

    client = ScriptedClient(default=schema_reply())
    study = create_study(
        "spent",
        Space(x=Float(0, 1)),
        storage=f"sqlite:///{tmp_path / 's.db'}",
        proposer="llm",
        model=client,
        proposer_options={"batch_size": 1},  # no candidate left over: every proposal asks the model
    )
    study.optimize(lambda p: p["x"], budget=Budget(trials=2))
    asked = len(client.requests)
    with pytest.raises(TrialBudgetReached):
        study.ask(max_trials=2)
    assert len(client.requests) == asked, "a model call was made for a trial that could not start"

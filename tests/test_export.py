"""Exporting a study to Optuna, read back with Optuna itself: a real tunesmith SQLite study with every kind of
trial, written into a real Optuna SQLite storage."""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState as OptunaState

from agent import Categorical, Float, Int, Space, Text, create_study, load_study
from agent.export import ExportError, ExportRefused, ExportReport, _frozen_trial, export_to_optuna
from agent.study import Study
from agent.trial import Trial, TrialState

SPACE = Space(
    lr=Float(1e-4, 1e-1, log=True),
    layers=Int(2, 8, step=2),
    act=Categorical(["relu", "tanh"]),
    prompt=Text("Be brief."),
)


@dataclass(frozen=True)
class Source:
    url: str  # the tunesmith storage
    trials: list[Trial]


def _build(url: str, name: str = "mlp") -> list[Trial]:
    """Complete trials (the first enqueued, with user attributes), then a failed, a pruned, an interrupted and a
    running one."""
    study = create_study(name, SPACE, storage=url, proposer="random", seed=0, metric="loss")
    study.enqueue({"lr": 1e-3, "layers": 4, "act": "relu", "prompt": "Say hi."})
    for _ in range(7):
        trial = study.ask()
        loss = _lr(trial) * cast(int, trial.params["layers"]) + (trial.params["act"] == "tanh")
        study.tell(trial, {"loss": loss, "acc": 0.5})
    study.set_user_attr(0, "proposer", "me")  # a user's attribute named like one of the export's
    study.set_user_attr(0, "note", "the default")
    study.tell(study.ask(), state="failed", error="boom")
    pruned = study.ask()
    study.report(pruned, 0, 0.9)
    study.report(pruned, 1, 0.6)
    study.tell(pruned, {"loss": 0.6}, state="pruned")
    study.tell(study.ask(), interrupted=True, state="failed", error="interrupted")
    study.ask()  # left running
    trials = study.trials
    study.close()
    return trials


@dataclass(frozen=True)
class Exported:
    report: ExportReport
    study: optuna.Study
    trials: list[optuna.trial.FrozenTrial]

    @property
    def by_number(self) -> dict[int, optuna.trial.FrozenTrial]:
        return {t.user_attrs["tunesmith_number"]: t for t in self.trials}


def _lr(trial: Trial) -> float:
    return cast(float, trial.params["lr"])


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    url = "sqlite:///" + str(tmp_path_factory.mktemp("export") / "tunesmith.db")
    return Source(url, _build(url))


@pytest.fixture
def optuna_url(tmp_path: Path) -> str:
    return "sqlite:///" + str(tmp_path / "optuna.db")


@pytest.fixture(scope="module")
def exported(source: Source, tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """The source study exported once, for the tests that only read it: exported and read back in a local time
    5:30 ahead of UTC, so that local and UTC times differ."""
    url = "sqlite:///" + str(tmp_path_factory.mktemp("optuna") / "optuna.db")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("TZ", "Asia/Kolkata")
        time.tzset()
        report = export_to_optuna(load_study("mlp", source.url), url)
        study = optuna.load_study(study_name="mlp", storage=url)
        trials = study.trials  # Optuna gives times in local time: read while it is India's
    time.tzset()
    return Exported(report, study, trials)


def _export(source: Source, optuna_url: str, replace: bool = False) -> optuna.Study:
    export_to_optuna(load_study("mlp", source.url), optuna_url, replace=replace)
    return optuna.load_study(study_name="mlp", storage=optuna_url)


def _by_number(study: optuna.Study) -> dict[int, optuna.trial.FrozenTrial]:
    return {t.user_attrs["tunesmith_number"]: t for t in study.trials}


def test_every_finished_trial_is_exported_with_its_state_value_and_params(source: Source, exported: Exported) -> None:
    assert (exported.report.exported, exported.report.running_skipped, exported.report.values_set_aside) == (10, 1, 0)
    finished = [t for t in source.trials if t.state is not TrialState.RUNNING]
    assert sorted(exported.by_number) == [t.number for t in finished]
    states = {
        TrialState.COMPLETE: OptunaState.COMPLETE,
        TrialState.FAILED: OptunaState.FAIL,
        TrialState.PRUNED: OptunaState.PRUNED,
    }
    for trial in finished:
        mine = exported.by_number[trial.number]
        assert mine.state is states[trial.state]
        assert mine.params == {k: v for k, v in trial.params.items() if k != "prompt"}
        assert mine.user_attrs["text:prompt"] == trial.params["prompt"]
        assert mine.user_attrs["proposer"] == trial.proposer
        if trial.state is TrialState.COMPLETE:
            assert mine.value == trial.value
            assert mine.user_attrs["metric:acc"] == 0.5
    assert exported.by_number[0].user_attrs["text:prompt"] == "Say hi."


def test_distributions_keep_log_scale_step_and_choices(exported: Exported) -> None:
    assert exported.trials[0].distributions == {
        "lr": FloatDistribution(1e-4, 1e-1, log=True),
        "layers": IntDistribution(2, 8, step=2),
        "act": CategoricalDistribution(["relu", "tanh"]),
    }


def test_failed_pruned_and_interrupted_trials_say_why(exported: Exported) -> None:
    failed, pruned, interrupted = (exported.by_number[n] for n in (7, 8, 9))
    assert failed.user_attrs["error"] == "boom"
    assert "interrupted" not in failed.user_attrs
    assert pruned.intermediate_values == {0: 0.9, 1: 0.6}
    assert pruned.value == 0.6  # the last intermediate value, as Optuna's own tell gives a pruned trial
    assert pruned.user_attrs["metric:loss"] == 0.6
    assert interrupted.state is OptunaState.FAIL
    assert interrupted.user_attrs["interrupted"] is True


def test_user_attributes_are_kept_and_never_overwrite_the_exports(exported: Exported) -> None:
    first = exported.by_number[0]
    assert first.user_attrs["proposer"] == "enqueued"
    assert first.user_attrs["user:proposer"] == "me"
    assert first.user_attrs["note"] == "the default"


def test_times_are_naive_local_times_as_optuna_writes_them(source: Source, exported: Exported) -> None:
    india = timedelta(hours=5, minutes=30)
    for trial in source.trials:
        if trial.state is TrialState.RUNNING:
            continue
        mine = exported.by_number[trial.number]
        assert trial.finished_at is not None
        assert mine.datetime_start == trial.started_at.replace(tzinfo=None) + india
        assert mine.datetime_complete == trial.finished_at.replace(tzinfo=None) + india


def test_the_study_names_its_source_metric_and_direction_and_has_the_same_best(
    source: Source, exported: Exported
) -> None:
    study, tunesmith = exported.study, load_study("mlp", source.url)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    assert study.metric_names == ["loss"]
    assert study.user_attrs["source"] == "tunesmith"
    assert study.user_attrs["metric"] == "loss"
    assert study.user_attrs["proposer"] == "random"
    assert study.user_attrs["model_calls"] == 0
    assert study.best_trial.user_attrs["tunesmith_number"] == tunesmith.best_trial.number
    assert study.best_value == tunesmith.best_value


def test_optuna_computes_parameter_importances_on_it(exported: Exported) -> None:
    evaluator = optuna.importance.FanovaImportanceEvaluator(n_trees=8, seed=0)
    importances = optuna.importance.get_param_importances(exported.study, evaluator=evaluator)
    assert set(importances) == {"lr", "layers", "act"}


def test_an_existing_name_is_refused_and_replace_gives_the_same_study_again(source: Source, optuna_url: str) -> None:
    first = _export(source, optuna_url)
    with pytest.raises(ExportRefused, match="--replace"):
        _export(source, optuna_url)
    again = _export(source, optuna_url, replace=True)
    assert optuna.get_all_study_names(optuna_url) == ["mlp"]
    assert [(t.params, t.value, t.state) for t in again.trials] == [(t.params, t.value, t.state) for t in first.trials]


def test_values_outside_the_current_space_become_user_attributes(tmp_path: Path, optuna_url: str) -> None:
    """A space edited in the database (an older release's study): lr now ends at 0.005 and act is gone."""
    path = tmp_path / "tunesmith.db"
    trials = _build("sqlite:///" + str(path))
    with sqlite3.connect(path) as db:
        (text,) = db.execute("SELECT space FROM studies").fetchone()
        space = json.loads(text)
        space["lr"]["high"] = 0.005
        del space["act"]
        db.execute("UPDATE studies SET space = ?", (json.dumps(space),))
    report = export_to_optuna(load_study("mlp", "sqlite:///" + str(path)), optuna_url)
    exported = _by_number(optuna.load_study(study_name="mlp", storage=optuna_url))
    finished = [t for t in trials if t.state is not TrialState.RUNNING]
    outside = [t for t in finished if _lr(t) > 0.005]
    assert outside
    assert report.values_set_aside == len(finished) + len(outside)  # every act, and the lr values above 0.005
    for trial in finished:
        mine = exported[trial.number]
        assert mine.user_attrs["param:act"] == trial.params["act"]
        assert ("lr" in mine.params) is (_lr(trial) <= 0.005)
        assert ("param:lr" in mine.user_attrs) is (_lr(trial) > 0.005)


def test_a_tunesmith_database_is_refused_and_left_as_it_was(source: Source) -> None:
    path = source.url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        tables = db.execute("SELECT name FROM sqlite_master").fetchall()
    with pytest.raises(ExportRefused, match="is a tunesmith database"):
        export_to_optuna(load_study("mlp", source.url), source.url)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == tables


def test_without_optuna_the_error_says_what_to_install(
    source: Source, optuna_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna raises ImportError
    study: Study = load_study("mlp", source.url)
    with pytest.raises(ExportError, match=r'pip install "tunesmith\[export\]"'):
        export_to_optuna(study, optuna_url)


def test_a_late_trial_and_its_parents_travel_as_user_attributes() -> None:
    """A late result (and lineage, from code evolution) cannot be staged through ask and tell: a stored trial as
    the storage gives it."""
    now = datetime.now(UTC)
    late = Trial(
        number=3,
        params={"lr": 0.01, "layers": 2, "act": "relu", "prompt": "x"},
        state=TrialState.COMPLETE,
        proposer="llm",
        started_at=now,
        finished_at=now,
        value=1.5,
        late=True,
        parents=(0, 1),
    )
    frozen, aside = _frozen_trial(late, SPACE)
    assert aside == 0
    assert frozen.user_attrs["late"] is True
    assert frozen.user_attrs["parents"] == [0, 1]
    assert frozen.value == 1.5

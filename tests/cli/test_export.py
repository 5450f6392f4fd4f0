"""``tunesmith export``: a study built with the Python API beside its job file, exported into an Optuna SQLite
file and read back with Optuna; once in a new process, as a user's shell runs it, then in this one (each new
process spends seconds importing)."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import optuna
import pytest

from agent import Float, Int, Space, create_study
from agent.cli import main
from tests.cli.helpers import tunesmith

JOB = """\
[study]
name = "mlp-digits"

[space]
lr = { type = "float", low = 0.0001, high = 0.1, log = true }
layers = { type = "int", low = 1, high = 4 }

[objective]
command = ["python", "train.py"]
"""


def _project(root: Path) -> None:
    """``proj/job.toml`` and its study in ``proj/tunesmith.db``: three complete trials and a running one."""
    folder = root / "proj"
    folder.mkdir()
    (folder / "job.toml").write_text(JOB)
    space = Space(lr=Float(1e-4, 1e-1, log=True), layers=Int(1, 4))
    study = create_study("mlp-digits", space, storage=f"sqlite:///{folder / 'tunesmith.db'}", proposer="random")
    for _ in range(3):
        trial = study.ask()
        study.tell(trial, cast(float, trial.params["lr"]) * cast(int, trial.params["layers"]))
    study.ask()
    study.close()


def test_export_writes_an_optuna_study_and_says_how_to_view_it(tmp_path: Path) -> None:
    _project(tmp_path)
    url = f"sqlite:///{tmp_path / 'optuna.db'}"

    first = tunesmith("export", "proj/job.toml", "--optuna", "optuna.db", "--name", "digits", cwd=tmp_path)
    assert first.code == 0, first.stderr
    assert first.stdout == (
        f'exported 3 trials of "mlp-digits" to {url} as "digits" (1 running trial skipped); '
        f"view with: optuna-dashboard {url}\n"
    )
    exported = optuna.load_study(study_name="digits", storage=url)
    assert [t.state for t in exported.trials] == [optuna.trial.TrialState.COMPLETE] * 3


def test_an_existing_optuna_study_is_refused_in_one_line_and_replace_overwrites_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In this process, through the command's parser: a job file, then a database path, as TARGET."""
    _project(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["export", "proj/job.toml", "--optuna", "optuna.db"]) == 0
    capsys.readouterr()

    with pytest.raises(SystemExit) as exited:
        main(["export", "proj/job.toml", "--optuna", "optuna.db"])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert 'already holds an Optuna study named "mlp-digits"' in error and "--replace" in error

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    assert main(["export", "proj/tunesmith.db", "--optuna", url, "--replace"]) == 0
    assert optuna.get_all_study_names(url) == ["mlp-digits"]
    assert len(optuna.load_study(study_name="mlp-digits", storage=url).trials) == 3

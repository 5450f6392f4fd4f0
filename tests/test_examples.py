"""Every job file under ``examples/`` passes the job check and runs, as a user would start it: a copy of its folder,
``tunesmith run job.toml --trials 2``, with the model it names (the local one)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from agent.jobfile import load_job
from tests.cli.helpers import REPO, tunesmith

JOBS = sorted((REPO / "examples").glob("*/job.toml"))


def test_there_are_examples() -> None:
    assert REPO / "examples" / "quickstart" / "job.toml" in JOBS


@pytest.mark.parametrize("job", JOBS, ids=[job.parent.name for job in JOBS])
def test_an_example_passes_the_job_check(job: Path) -> None:
    load_job(job)


@pytest.mark.slow  # a new process, and the example's model
@pytest.mark.parametrize("job", JOBS, ids=[job.parent.name for job in JOBS])
def test_an_example_runs_two_trials(job: Path, tmp_path: Path) -> None:
    folder = shutil.copytree(job.parent, tmp_path / job.parent.name, ignore=shutil.ignore_patterns("*.db*"))
    result = tunesmith("run", "job.toml", "--trials", "2", "--storage", "example.db", cwd=folder, timeout=300)
    assert result.code == 0, result.stdout + result.stderr
    with sqlite3.connect(folder / "example.db") as conn:
        trials = conn.execute("SELECT state, error FROM trials ORDER BY number").fetchall()
    # The first trial evaluates the example as it stands; a model's edit may fail its tests, with the reason, and
    # a prompt that loses on its minibatch is pruned.
    assert len(trials) == 2 and trials[0][0] == "complete", result.stdout
    assert all(state in ("complete", "pruned") or (state == "failed" and error) for state, error in trials), trials

"""``status``, ``best``, ``trials`` and ``show`` pointed at what a user has: the job file, the database file, a
study name. One real run (a command that fails on purpose for one point, a model on a real HTTP server for the
others) feeds every test."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.testing.misbehaving_server import MisbehavingServer
from tests.cli.helpers import tunesmith

pytestmark = pytest.mark.slow

OBJECTIVE = """\
import json, sys
x = float(sys.argv[1])
if x > 0.85:
    print("loading data...", file=sys.stderr)
    raise ValueError(f"x={x} is too large for this model")
print(json.dumps({"loss": (x - 0.3) ** 2, "width": 4 * x}))
"""

JOB = """\
[study]
name = "looked-at"

[space]
x = {{ type = "float", low = 0, high = 1 }}

[objective]
command = ["{{python}}", "objective.py", "{{x}}"]
metric = "loss"

[proposer]
kind = "llm"
model = "{model}"

[budget]
trials = 4

[[enqueue]]
x = 0.9

[[enqueue]]
x = 0.1
"""


@dataclass(frozen=True)
class Project:
    root: Path  # where the commands run
    job: Path  # root/proj/job.toml


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("reading")
    folder = root / "proj"
    folder.mkdir()
    (folder / "objective.py").write_text(OBJECTIVE)
    with MisbehavingServer() as server:
        (folder / "job.toml").write_text(JOB.format(model=server.spec()))
        result = tunesmith("run", "proj/job.toml", cwd=root)
    assert result.code == 0, result.stderr
    return Project(root, folder / "job.toml")


@pytest.mark.parametrize(
    "target",
    [["proj/job.toml"], ["looked-at", "--storage", "proj/tunesmith.db"], ["proj/tunesmith.db"]],
    ids=["job file", "name and database path", "database path"],
)
def test_best_takes_the_job_file_a_database_path_or_a_name(project: Project, target: list[str]) -> None:
    result = tunesmith("best", *target, cwd=project.root)
    assert result.code == 0, result.stderr
    best = json.loads(result.stdout)
    assert best["study"] == "looked-at" and best["value"] >= 0 and "width" in best["metrics"]


def test_status_of_a_job_file_and_of_a_database_path(project: Project) -> None:
    one = tunesmith("status", "proj/job.toml", "--json", cwd=project.root)
    assert one.code == 0, one.stderr
    assert json.loads(one.stdout)["states"]["failed"] == 1
    every = tunesmith("status", "proj/tunesmith.db", cwd=project.root)
    assert every.code == 0 and "looked-at" in every.stdout


def test_trials_lists_every_trial_and_failed_ones_with_their_cause(project: Project) -> None:
    table = tunesmith("trials", "proj/job.toml", cwd=project.root)
    assert table.code == 0, table.stderr
    assert "looked-at: 4 trials" in table.stdout
    assert "ValueError: x=0.9 is too large for this model" in table.stdout
    failed = tunesmith("trials", "proj/job.toml", "--failed", "--json", cwd=project.root)
    rows = json.loads(failed.stdout)
    assert [(r["number"], r["state"], r["params"]) for r in rows] == [(0, "failed", {"x": 0.9})]
    assert rows[0]["error"] == "the command exited with status 1"
    assert "loading data..." in rows[0]["feedback"]


def test_show_a_failed_trial_has_its_error_and_output(project: Project) -> None:
    result = tunesmith("show", "proj/job.toml", "0", cwd=project.root)
    assert result.code == 0, result.stderr
    expected = ("Trial 0 of looked-at: failed (enqueued", "x = 0.9", "the command exited with status 1", "loading data")
    for text in expected:
        assert text in result.stdout, result.stdout


def test_show_a_model_proposed_trial_has_the_rationale_prompt_and_reply(project: Project) -> None:
    trials = json.loads(tunesmith("trials", "proj/job.toml", "--json", cwd=project.root).stdout)
    proposed = next(t for t in trials if t["proposer"] == "llm")
    shown = tunesmith("show", "proj/job.toml", str(proposed["number"]), cwd=project.root)
    assert shown.code == 0, shown.stderr
    assert "proposed by model call" in shown.stdout
    assert "prompt: system" in shown.stdout and "prompt: user" in shown.stdout and "reply" in shown.stdout
    as_json = json.loads(tunesmith("show", "proj/job.toml", str(proposed["number"]), "--json", cwd=project.root).stdout)
    call = as_json["model_call"]
    assert call["purpose"] == "propose" and call["reply"] and call["messages"][0]["role"] == "system"


def test_show_an_unknown_trial_says_which_exist(project: Project) -> None:
    result = tunesmith("show", "proj/job.toml", "99", cwd=project.root)
    assert result.code == 2
    assert "has no trial 99 (its trials are numbered 0 to 3)" in result.stderr


def test_reading_commands_never_create_a_database(tmp_path: Path) -> None:
    result = tunesmith("trials", "missing.db", cwd=tmp_path)
    assert result.code == 2 and "no database at" in result.stderr
    assert list(tmp_path.iterdir()) == []

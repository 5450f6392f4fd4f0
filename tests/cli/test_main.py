"""The ``tunesmith`` command, run for real in subprocesses against real SQLite files."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import agent
from tests.cli.helpers import REPO, Result, tunesmith

# Each test runs the command in a new process.
pytestmark = pytest.mark.slow

STUDY = "cli-quad"
TRIALS = 6

OBJECTIVE = """\
import json, sys
x, depth, act = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
print("training...")
print(json.dumps({"step": 1, "value": 99.0}))
print(json.dumps({"loss": (x - 0.3) ** 2 + depth + (0.5 if act == "tanh" else 0.0), "x": x}))
"""


def loss_of(params: dict[str, object]) -> float:
    x, depth, act = float(params["x"]), int(params["depth"]), params["act"]  # type: ignore[arg-type]
    return (x - 0.3) ** 2 + depth + (0.5 if act == "tanh" else 0.0)


JOB = f"""\
[study]
name = "{STUDY}"
direction = "minimize"
storage = "sqlite:///cli.db"
seed = 7

[space]
x = {{ type = "float", low = 0, high = 1 }}
depth = {{ type = "int", low = 0, high = 3 }}
act = {{ type = "categorical", choices = ["relu", "tanh"] }}

[objective]
command = [{json.dumps(sys.executable)}, "objective.py", "{{x}}", "{{depth}}", "{{act}}"]
metric = "loss"
timeout = "30s"

[proposer]
kind = "random"

[budget]
trials = {TRIALS}
"""


def stored_trials(db: Path) -> list[tuple[int, str, float | None, dict[str, object]]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT t.number, t.state, t.value, t.params FROM trials t JOIN studies s ON s.id = t.study_id "
            "WHERE s.name = ? ORDER BY t.number",
            (STUDY,),
        ).fetchall()
    return [(number, state, value, json.loads(params)) for number, state, value, params in rows]


@dataclass(frozen=True)
class Project:
    root: Path  # the cwd of every command
    job: Path  # in a sub-folder: the storage and the objective are relative to it, not to the cwd
    db: Path
    first_run: Result

    @property
    def storage(self) -> str:
        return f"sqlite:///{self.db}"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("cli")
    folder = root / "proj"
    folder.mkdir()
    (folder / "objective.py").write_text(OBJECTIVE)
    job = folder / "job.toml"
    job.write_text(JOB)
    first = tunesmith("run", "proj/job.toml", cwd=root)
    return Project(root, job, (folder / "cli.db").resolve(), first)


def test_version(tmp_path: Path) -> None:
    result = tunesmith("--version", cwd=tmp_path)
    assert result.code == 0
    assert result.stdout.strip() == f"tunesmith {agent.__version__}"


def test_run_completes_the_budget_and_prints_a_summary(project: Project) -> None:
    result = project.first_run
    assert result.code == 0, result.stderr
    assert f"{STUDY} (minimize, loss): {TRIALS} trials ({TRIALS} complete); stopped: trial budget" in result.stdout
    assert f"Storage: sqlite:///{project.db}" in result.stdout
    assert "Best trial #" in result.stdout
    assert "Resuming" not in result.stdout
    assert project.db.exists()
    assert not (project.root / "cli.db").exists(), "a relative storage is taken from the job file's folder"
    trials = stored_trials(project.db)
    assert [t[0] for t in trials] == list(range(TRIALS))
    for _, state, value, params in trials:
        assert state == "complete"
        assert value == pytest.approx(loss_of(params))


def test_run_again_resumes_without_exceeding_the_budget(project: Project) -> None:
    before = stored_trials(project.db)
    result = tunesmith("run", str(project.job), cwd=project.root)
    assert result.code == 0, result.stderr
    assert f"Resuming study {STUDY}: {TRIALS} trials so far." in result.stdout
    assert "stopped: trial budget" in result.stdout
    assert stored_trials(project.db) == before


def test_status_json_of_one_study(project: Project) -> None:
    result = tunesmith("status", STUDY, "--storage", project.storage, "--json", cwd=project.root)
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["name"] == STUDY
    assert summary["direction"] == "minimize" and summary["metric"] == "loss"
    assert summary["trials"] == TRIALS
    assert summary["states"] == {"running": 0, "complete": TRIALS, "failed": 0, "pruned": 0}
    assert summary["proposers"]["random"]["trials"] == TRIALS
    values = [value for _, _, value, _ in stored_trials(project.db)]
    assert summary["best"]["value"] == min(values)


def test_status_json_of_all_studies(project: Project) -> None:
    result = tunesmith("status", "--storage", project.storage, "--json", cwd=project.root)
    assert result.code == 0, result.stderr
    summaries = json.loads(result.stdout)
    assert [s["name"] for s in summaries] == [STUDY]
    assert summaries[0]["states"]["complete"] == TRIALS


def test_status_without_a_name_lists_the_study(project: Project) -> None:
    result = tunesmith("status", "--storage", project.storage, cwd=project.root)
    assert result.code == 0, result.stderr
    assert "Studies" in result.stdout
    row = next(line for line in result.stdout.splitlines() if STUDY in line)
    assert "minimize" in row
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    assert cells[:6] == [STUDY, "minimize", str(TRIALS), str(TRIALS), "0", "0"]


def test_best_prints_the_minimum_as_json(project: Project) -> None:
    result = tunesmith("best", STUDY, "--storage", project.storage, cwd=project.root)
    assert result.code == 0, result.stderr
    best = json.loads(result.stdout)
    trials = stored_trials(project.db)
    assert best["study"] == STUDY
    assert best["value"] == min(value for _, _, value, _ in trials)
    _, _, value, params = next(t for t in trials if t[0] == best["number"])
    assert best["params"] == params and best["value"] == value
    assert best["metrics"]["loss"] == value
    assert best["metrics"]["x"] == params["x"]
    assert best["proposer"] == "random"


def test_best_of_an_unknown_study_lists_the_existing_ones(project: Project) -> None:
    result = tunesmith("best", "no-such-study", "--storage", project.storage, cwd=project.root)
    assert result.code == 2
    assert result.stdout == ""
    assert f"error: no study named 'no-such-study' in {project.storage} (studies there: {STUDY})" in result.stderr


def test_a_broken_job_file_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    (tmp_path / "objective.py").write_text(OBJECTIVE)
    broken = JOB.replace('direction = "minimize"', 'direction = "up"').replace("trials = 6", "trials = 0")
    (tmp_path / "job.toml").write_text(broken)
    result = tunesmith("run", "job.toml", cwd=tmp_path)
    assert result.code == 2
    assert f"error: {(tmp_path / 'job.toml').resolve()} cannot be run:" in result.stderr
    assert "  - study.direction: Input should be 'minimize' or 'maximize', got 'up'" in result.stderr
    assert "  - budget.trials: Input should be greater than or equal to 1, got 0" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.toml", "objective.py"], "no database may be created"


def test_a_missing_job_file(tmp_path: Path) -> None:
    result = tunesmith("run", "missing.toml", cwd=tmp_path)
    assert result.code == 2
    assert f"{(tmp_path / 'missing.toml').resolve()} cannot be run:" in result.stderr
    assert "  - file not found" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_best_and_status_do_not_create_a_database(tmp_path: Path) -> None:
    # A typo in --storage (or running `status` in the wrong folder) should say there is nothing there,
    # not leave an empty database behind.
    storage = f"sqlite:///{tmp_path / 'typo.db'}"
    best = tunesmith("best", STUDY, "--storage", storage, cwd=tmp_path)
    status = tunesmith("status", cwd=tmp_path)
    assert best.code == 2
    assert status.code == 2 and f"no database at {tmp_path / 'tunesmith.db'}" in status.stderr
    assert list(tmp_path.iterdir()) == [], "read-only commands created files"


def test_help_imports_none_of_the_heavy_packages(tmp_path: Path) -> None:
    # `tunesmith --help` answers at once: the commands import numpy, pydantic, SQLAlchemy and torch when they run.
    script = (
        "import sys\n"
        "from agent.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('numpy', 'pydantic', 'sqlalchemy', 'torch', 'rich') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"

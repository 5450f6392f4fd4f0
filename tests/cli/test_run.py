"""``tunesmith run`` as a new user meets it: no terminal (a log, CI), flags instead of editing the job file,
failing objectives, job files that change between runs. Real processes, real SQLite files."""

from __future__ import annotations

import json
import re
import socket
import sqlite3
from pathlib import Path

import pytest

from agent.testing.misbehaving_server import MisbehavingServer
from tests.cli.helpers import tunesmith

pytestmark = pytest.mark.slow  # each test starts the command in new processes

#: The result line also holds "step" and "epoch": only the metric makes a line the result.
OBJECTIVE = """\
import json, sys
x, y = float(sys.argv[1]), float(sys.argv[2])
print(json.dumps({"step": 1, "epoch": 0, "note": "warming up"}))
print(json.dumps({"step": 100, "epoch": 3, "loss": (x - 0.3) ** 2 + (y - 0.5) ** 2}))
"""

JOB = """\
[study]
name = "{name}"
seed = 1

[space]
x = {{ type = "float", low = 0, high = 1 }}
y = {{ type = "float", low = 0, high = 1 }}

[objective]
command = ["{{python}}", "{script}", "{{x}}", "{{y}}"]
metric = "loss"

[proposer]
kind = "{kind}"
{proposer}
"""

BUDGET = "\n[budget]\ntrials = {trials}\n"
#: A trial line in a log: the time, the number, the outcome, the proposer and seconds, the parameters.
TRIAL_LINE = re.compile(r"^\d\d:\d\d:\d\d trial (\d+) (complete  \S+|failed: .+) \((\w+), [\d.e+-]+ s\)  x=\S+ y=\S+$")


def write_job(
    folder: Path,
    name: str = "quad",
    trials: int | None = 4,
    kind: str = "random",
    proposer: str = "",
    script: str = "objective.py",
    objective: str = OBJECTIVE,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / script).write_text(objective)
    job = JOB.format(name=name, kind=kind, proposer=proposer, script=script)
    if trials is not None:
        job += BUDGET.format(trials=trials)
    (folder / "job.toml").write_text(job)
    return folder / "job.toml"


def stored(db: Path) -> list[tuple[int, str, str, dict[str, float]]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT number, state, proposer, params FROM trials ORDER BY number").fetchall()
    return [(n, state, proposer, json.loads(params)) for n, state, proposer, params in rows]


def trial_lines(stdout: str) -> list[re.Match[str]]:
    return [m for line in stdout.splitlines() if (m := TRIAL_LINE.match(line))]


def test_without_a_terminal_each_trial_is_one_line_and_the_summary_shows_the_best_metrics(tmp_path: Path) -> None:
    write_job(tmp_path / "proj")
    result = tunesmith("run", "proj/job.toml", cwd=tmp_path)
    assert result.code == 0, result.stderr
    lines = trial_lines(result.stdout)
    assert [int(m.group(1)) for m in lines] == [0, 1, 2, 3], result.stdout
    assert all(m.group(2).startswith("complete") and m.group(3) == "random" for m in lines)
    assert "quad (minimize, loss): 4 trials (4 complete); stopped: trial budget" in result.stdout
    # the best trial's other metrics are in the summary, next to its parameters
    assert re.search(r"metric step\s+│\s+100\b", result.stdout), result.stdout
    assert re.search(r"metric epoch\s+│\s+3\b", result.stdout)
    assert not re.search(r"━+ +\d+/\d+", result.stdout), "no progress bar is drawn into a log"
    assert (tmp_path / "proj" / "tunesmith.db").exists(), "the default storage is beside the job file"


def test_quiet_shows_only_the_summary(tmp_path: Path) -> None:
    write_job(tmp_path, trials=2)
    result = tunesmith("run", "job.toml", "-q", cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert trial_lines(result.stdout) == []
    assert "2 trials (2 complete)" in result.stdout


def test_trials_and_more_override_the_budget_and_a_job_needs_no_budget_with_them(tmp_path: Path) -> None:
    write_job(tmp_path, trials=None)
    first = tunesmith("run", "job.toml", "--trials", "2", cwd=tmp_path)
    assert first.code == 0, first.stderr
    more = tunesmith("run", "job.toml", "--more", "3", cwd=tmp_path)
    assert more.code == 0, more.stderr
    assert [int(m.group(1)) for m in trial_lines(more.stdout)] == [2, 3, 4]
    assert len(stored(tmp_path / "tunesmith.db")) == 5
    both = tunesmith("run", "job.toml", "--trials", "2", "--more", "1", cwd=tmp_path)
    assert both.code == 2 and "not allowed with argument" in both.stderr
    zero = tunesmith("run", "job.toml", "--more", "0", cwd=tmp_path)
    assert zero.code == 2 and "expected a number of at least 1, got 0" in zero.stderr
    without = tunesmith("run", "job.toml", cwd=tmp_path)
    assert without.code == 2 and "budget: set trials or wall_time" in without.stderr


def test_storage_and_workers_flags(tmp_path: Path) -> None:
    write_job(tmp_path, trials=4)
    result = tunesmith("run", "job.toml", "--storage", "elsewhere/other.db", "--workers", "2", cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert not (tmp_path / "tunesmith.db").exists()
    assert len(stored(tmp_path / "elsewhere" / "other.db")) == 4


def test_dry_run_checks_everything_and_writes_nothing(tmp_path: Path) -> None:
    write_job(tmp_path, trials=4)
    with (tmp_path / "job.toml").open("a") as job:
        job.write("\n[[enqueue]]\nx = 0.25\ny = 0.5\n")
    result = tunesmith("run", "job.toml", "--dry-run", "--more", "2", cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert "is ready to run" in result.stdout
    assert "2 more trials" in result.stdout and "x=0.25 y=0.5" in result.stdout
    assert "Dry run: nothing was started or written." in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.toml", "objective.py"]
    broken = (tmp_path / "job.toml").read_text().replace('"{x}"', '"{learning_rate}"')
    (tmp_path / "job.toml").write_text(broken)
    refused = tunesmith("run", "job.toml", "--dry-run", cwd=tmp_path)
    assert refused.code == 2
    assert "placeholder {learning_rate} is not a parameter" in refused.stderr


def test_points_added_to_the_job_file_after_the_budget_was_spent_run_on_the_next_run(tmp_path: Path) -> None:
    job = write_job(tmp_path, trials=2)
    assert tunesmith("run", "job.toml", cwd=tmp_path).code == 0
    job.write_text(job.read_text() + "\n[[enqueue]]\nx = 0.3\ny = 0.5\n")
    result = tunesmith("run", "job.toml", cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert "1 enqueued point waiting (1 new in the job file)" in result.stdout
    assert stored(tmp_path / "tunesmith.db")[-1] == (2, "complete", "enqueued", {"x": 0.3, "y": 0.5})
    again = tunesmith("run", "job.toml", cwd=tmp_path)
    assert again.code == 0 and len(stored(tmp_path / "tunesmith.db")) == 3, "a point is evaluated once"


def test_a_changed_space_names_the_parameter(tmp_path: Path) -> None:
    job = write_job(tmp_path, trials=1)
    assert tunesmith("run", "job.toml", cwd=tmp_path).code == 0
    widened = 'y = { type = "float", low = 0, high = 2 }'
    job.write_text(job.read_text().replace('y = { type = "float", low = 0, high = 1 }', widened))
    result = tunesmith("run", "job.toml", cwd=tmp_path)
    assert result.code == 2
    assert "y: stored float [0, 1], now float [0, 2]" in result.stderr


def test_a_broken_objective_stops_after_five_identical_failures_and_says_why(tmp_path: Path) -> None:
    broken = "import nonexistent_module_for_tunesmith\n" + OBJECTIVE
    write_job(tmp_path, trials=12, objective=broken)
    result = tunesmith("run", "job.toml", cwd=tmp_path)
    assert result.code == 1, result.stdout + result.stderr
    cause = "ModuleNotFoundError: No module named 'nonexistent_module_for_tunesmith'"
    lines = trial_lines(result.stdout)
    assert len(lines) == 5 and all(cause in m.group(2) for m in lines), result.stdout
    assert cause in result.stderr and "error:" in result.stderr
    assert len(stored(tmp_path / "tunesmith.db")) == 5, "the rest of the budget is not spent on the same error"


def test_python_placeholder_is_the_interpreter_running_tunesmith(tmp_path: Path) -> None:
    # No `python` on PATH at all: only {python} can find an interpreter with the project's packages.
    write_job(tmp_path, trials=1)
    result = tunesmith("run", "job.toml", cwd=tmp_path, env={"PATH": str(tmp_path / "empty")})
    assert result.code == 0, result.stderr
    assert "1 trials (1 complete)" in result.stdout


def test_verbose_shows_each_model_call(tmp_path: Path) -> None:
    with MisbehavingServer() as server:  # an OpenAI-compatible server on 127.0.0.1 answering valid candidates
        write_job(tmp_path, trials=3, kind="llm", proposer=f'model = "{server.spec()}"')
        result = tunesmith("run", "job.toml", "-v", cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert re.search(r"model call propose: \d+ of \d+ candidates valid \(\d+\+\d+ tokens", result.stderr), result.stderr
    assert any(m.group(3) == "llm" for m in trial_lines(result.stdout))
    quiet = tunesmith("run", "job.toml", "--more", "1", cwd=tmp_path)
    assert "model call" not in quiet.stderr, "model calls are shown with -v only"


def test_a_model_server_that_is_down_is_a_warning_and_bo_proposes(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port on which nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    write_job(tmp_path, trials=3, kind="auto", proposer=f'model = "http://127.0.0.1:{port}/v1#m"')
    result = tunesmith("run", "job.toml", cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "WARNING the model failed" in result.stderr and "Connection refused" in result.stderr
    assert "retrying in" not in result.stderr, "each retry is detail for -v"
    assert [m.group(3) for m in trial_lines(result.stdout)] == ["bo", "bo", "bo"]

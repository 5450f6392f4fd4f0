"""The fault-injection harness: its counting and report as pure functions, then each scenario at tiny sizes.

The smoke tests check that each scenario produces its rows with counts that add up, never that the cases
hold: that is the benchmark's finding, and on a tree with faults the harness must still report them.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from evals.reliability import cli, hostile, kill9, leaks, mcp, models, race
from evals.reliability.common import (
    MARK_ENV,
    TRIAL_ENV,
    Context,
    Marked,
    Row,
    find_marked,
    job_toml,
    kill_marked,
    merge_rows,
    read_trials,
)
from evals.reliability.counting import (
    TrialRow,
    attribute,
    duplicate_points,
    enqueued_counts,
    integrity_problems,
    lost_between,
    occurrences,
    point_key,
    tally,
    trial_of_temp_folder,
)
from evals.reliability.report import render


def trial(number: int, state: str = "complete", value: float | None = 1.0, **kw: Any) -> TrialRow:
    params = kw.pop("params", {"x": 0.1 * number})
    return TrialRow(number, state, params, value if state == "complete" else None, **kw)


# Counting ----------------------------------------------------------------------------------------------------


def test_an_interrupted_point_run_again_is_no_duplicate_but_two_finished_runs_are() -> None:
    p, q = {"x": 0.5}, {"x": 0.25}
    trials = [
        trial(0, "failed", params=p, interrupted=True),
        trial(1, params=p),  # the interrupted point, evaluated again: fine
        trial(2, params=q),
        trial(3, "failed", params=q),  # evaluated to the end twice: a duplicate, whatever the outcome
        trial(4, "running", params={"x": 0.9}),
        trial(5, "complete", params={"x": 0.9}, interrupted=True, late=True),  # late: finished after all
    ]
    assert duplicate_points(trials) == {point_key(q): 2}
    assert [t.finished for t in trials] == [False, True, True, True, False, True]


def test_points_match_to_twelve_digits_and_enqueued_points_may_leave_parameters_out() -> None:
    assert point_key({"x": 0.1 + 0.2, "c": "a"}) == point_key({"c": "a", "x": 0.3})
    assert point_key({"x": 0.3}) != point_key({"x": 0.3000001})
    trials = [
        trial(0, params={"x": 0.5, "t": "default"}),
        trial(1, "failed", params={"x": 0.5, "t": "other"}, interrupted=True),
        trial(2, params={"x": 2.0, "t": "default"}),
        trial(3, params={"x": 2.0, "t": "default"}),
    ]
    assert enqueued_counts(trials, [{"x": 0.5}, {"x": 2.0}, {"x": -1.0}]) == [1, 2, 0]


def test_a_completed_trial_is_lost_when_it_changes_state_value_or_point_or_disappears() -> None:
    before = [trial(0), trial(1), trial(2), trial(3), trial(4, "running")]
    after = [trial(0), trial(1, "failed"), trial(2, value=9.0), trial(4)]
    assert lost_between(before, after) == [1, 2, 3]
    assert lost_between(before, before) == []
    assert lost_between(before, [trial(0, params={"x": 7.0}), *before[1:]]) == [0]


def test_leftovers_are_charged_to_the_first_kill_that_caught_their_trial_running() -> None:
    per_kill, other = attribute([3, 3, 7, None, 1], [[3], [3, 7], []])
    assert per_kill == [2, 1, 0] and other == 2
    assert trial_of_temp_folder("tunesmith-trial-12-abc_d") == 12
    assert trial_of_temp_folder("tunesmith-trial-x-1") is None and trial_of_temp_folder("pymp-1") is None


def test_occurrences_integrity_and_tally() -> None:
    assert occurrences(b"key=sk-1 again sk-1", {"k": "sk-1", "p": "pw", "empty": ""}) == {"k": 2, "p": 0}
    ok = [trial(0), trial(1), trial(2)]
    assert integrity_problems(ok, 1, 3, 3) == []
    assert integrity_problems(ok[:2], 1, 2, 3) == []  # a failed process may have stored nothing
    problems = integrity_problems([trial(0), trial(2, "running")], 2, 3, 3)
    assert problems == ["2 studies", "2 trials stored, 3 run", "trial numbers are not 0..n-1", "1 trials not complete"]
    assert integrity_problems([], 0, 0, 2) == []
    assert tally(["a", "b", "a", "", "c", "d"], limit=2) == "a x2; b; 2 other kind(s)"


# Rows and the report -----------------------------------------------------------------------------------------


def test_rows_merge_by_check_and_render_as_a_table() -> None:
    one = Row("kill9", "stray processes", 16, 2, 3, "processes", "kill 4")
    two = Row("kill9", "stray processes", 16, 0, 0, "processes")
    merged = merge_rows([one, two], ["w1", "w2"])
    assert (merged.cases, merged.broken, merged.held, merged.worst) == (32, 2, 30, 3)
    assert merged.notes == "w1: kill 4" and merged.worst_text == "3 processes"
    slowest = merge_rows([Row("m", "s", 1, 0, 4.5, "s", combine="max"), Row("m", "s", 1, 1, 9.0, "s")], ["a", "b"])
    assert slowest.worst == 9.0
    assert Row.from_json(merged.to_json()) == merged

    results = {
        "meta": {
            "command": "python -m evals.reliability",
            "date": "today",
            "machine": {"nproc": 2, "cpu": "cpu", "platform": "linux", "python": "3.11", "sqlite": "3.40"},
            "tunesmith": {"tree": "/t", "git": "abc"},
            "load_average": {"start": [1.0, 1.0, 1.0]},
        },
        "sizes": "kill9 32 kills",
        "rows": [merged.to_json(), Row("race", "a | b", 5, 0, 0, "x").to_json()],
        "scenarios": {"kill9": {"seconds": 12.0, "details": {}}, "race": {"seconds": 3.0, "details": {}}},
    }
    markdown = render(results)
    assert "| kill9 | stray processes | 32 | 30 | **2** | 3 processes | w1: kill 4 |" in markdown
    assert "| race | a \\| b | 5 | 5 | 0 | 0 x |  |" in markdown
    assert "kill9 12 s, race 3 s (total 15 s)" in markdown and "1 of 2 checks broke" in markdown


def test_job_files_are_valid_toml() -> None:
    text = job_toml(
        {
            "study": {"name": 'a "quoted" name', "workers": 2, "requeue_interrupted": True},
            "space": {"x": {"type": "float", "low": -3.0, "high": 3.0}},
            "objective": {"command": ["python", "o.py", "{x}"], "metric": "y"},
        },
        [{"x": 0.5}, {"x": 1.0}],
    )
    data = tomllib.loads(text)
    assert data["study"]["name"] == 'a "quoted" name' and data["study"]["requeue_interrupted"] is True
    assert data["space"]["x"] == {"type": "float", "low": -3.0, "high": 3.0}
    assert data["enqueue"] == [{"x": 0.5}, {"x": 1.0}]


def _kill(index: int, in_flight: list[int]) -> kill9.Kill:
    return kill9.Kill(index, "t", 1.0, killed=True, rc=None, in_flight=in_flight)


def test_kill9_rows_charge_each_fault_to_its_check() -> None:
    enqueued = [trial(i, params=p) for i, p in enumerate(kill9.ENQUEUE)]
    first = [*enqueued, trial(3), trial(4, "running")]
    final = [*enqueued, trial(3, "failed"), trial(4, "failed", interrupted=True), trial(5), trial(6, params={"x": 0.5})]
    strays = [Marked(1, 4, ("sleep",)), Marked(2, 5, ("sleep",)), Marked(3, None, ("python",))]
    result = kill9.SetupResult(
        kill9.Setup(2), [_kill(0, [4])], [first], final, 0, "", strays, ["tunesmith-trial-4-ab", "other"], 1.0
    )
    rows = {r.check: r for r in kill9.rows_for(result)}
    assert (rows["completed trials lost"].broken, rows["completed trials lost"].notes) == (1, "kill 0: trials [3]")
    assert (rows["stray processes of killed runs"].broken, rows["stray processes of killed runs"].worst) == (1, 1)
    assert rows["children of finished trials"].worst == 2  # trial 5's child and one without a trial number
    assert rows["leftover temp folders"].broken == 1 and rows["leftover temp folders"].worst == 1
    assert rows["enqueued points run exactly once"].broken == 0
    assert rows["runs end cleanly"].cases == 2 and rows["runs end cleanly"].broken == 0
    for row in rows.values():
        assert 0 <= row.broken <= row.cases


def test_secrets_rows_count_values_by_place() -> None:
    places = {"database": {"study.db": {"HF_TOKEN": 2}}, "CLI output": {}}
    details = {"commands": [{"argv": ["run", "job.toml"], "rc": 1}], "echo_headers": False}
    rows = leaks.rows_for(places, {"HF_TOKEN": "hf", "MY_SECRET": "s"}, details)
    assert [(r.cases, r.broken, r.worst) for r in rows] == [(2, 1, 2), (2, 0, 0)]
    assert rows[0].notes.startswith("HF_TOKEN x2 (in study.db); `run job.toml` exited 1")
    assert "echo_headers: behaviour not available" in rows[0].notes


def test_arguments_are_checked() -> None:
    args = cli.parse_args(["--scenario", "kill9,race", "--setups", "1,2:processes", "--behaviours", "ok,hang"])
    assert args.scenario == ["kill9", "race"]
    assert [s.label for s in args.setups] == ["w1", "w2-processes"]
    assert [b.name for b in args.behaviours] == ["ok", "hang"]
    assert len(cli.parse_args([]).behaviours) == 16
    for bad in (["--scenario", "nothing"], ["--behaviours", "teapot"], ["--setups", "0"], ["--kills", "-1"]):
        with pytest.raises(SystemExit):
            cli.parse_args(bad)


def test_a_scenario_that_raises_is_a_broken_row(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def explode(ctx: Context) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "_scenario", lambda name, args: explode)
    outcome = cli.run_one("kill9", Context(tmp_path, "test-mark", 0), cli.parse_args([]))
    [row] = outcome.rows
    assert (row.check, row.broken, row.notes) == ("harness error", 1, "RuntimeError: boom")
    assert "RuntimeError" in outcome.details["error"]


# Processes and files -----------------------------------------------------------------------------------------


def test_marked_processes_are_found_with_their_trial_and_killed() -> None:
    mark = f"test-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, MARK_ENV: f"{mark}/scenario", TRIAL_ENV: "7"}
    child = subprocess.Popen(["sleep", "30"], env=env)
    other = subprocess.Popen(["sleep", "30"], env={**os.environ, MARK_ENV: f"{mark}-other"})
    try:
        # Until a child has exec'd sleep it shows this process's environment, without its mark: wait for both.
        deadline = time.monotonic() + 30
        while any(psutil.Process(p.pid).cmdline()[:1] != ["sleep"] for p in (child, other)):
            assert time.monotonic() < deadline, "the children never started sleep"
            time.sleep(0.01)
        assert [(m.pid, m.trial) for m in find_marked(mark)] == [(child.pid, 7)]
        assert find_marked(f"{mark}/scenario") and not find_marked(f"{mark}/else")
        assert kill_marked(mark) == 1
        assert child.wait(5) == -9
    finally:
        for process in (child, other):
            process.kill()
            process.wait()


def test_reading_trials_never_creates_a_database(tmp_path: Path) -> None:
    assert read_trials(tmp_path / "missing.db") == []
    assert not (tmp_path / "missing.db").exists()


# Scenarios at tiny sizes -------------------------------------------------------------------------------------


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[Context]:
    context = Context(tmp_path, f"test-{uuid.uuid4().hex[:8]}", 0)
    yield context
    kill_marked(context.run_mark)


def _sane(rows: list[Row]) -> None:
    for row in rows:
        assert 0 <= row.broken <= row.cases, row
        assert row.check != "harness error", row.notes


@pytest.mark.slow
def test_kill9_smoke(ctx: Context) -> None:
    rows, details = kill9.run(ctx, 2, [kill9.Setup(1)], child_life=120)
    _sane(rows)
    by_check = {r.check: r for r in rows}
    assert len(rows) == 7
    assert by_check["completed trials lost"].cases == 2
    assert by_check["runs end cleanly"].cases == 3
    assert by_check["enqueued points run exactly once"].cases == len(kill9.ENQUEUE)
    [setup] = details["setups"]
    assert len(setup["kills"]) == 2 and setup["finished"] >= kill9.FINAL_TRIALS


@pytest.mark.slow
def test_race_smoke(ctx: Context) -> None:
    rows, details = race.run(ctx, repeats=2, processes=4, cli_repeats=1, cli_runs=2)
    _sane(rows)
    assert [r.cases for r in rows[:2]] == [2, 2]
    assert rows[2].cases == 2 and rows[3].cases == len(race.CLI_POINTS)
    assert len(details["api"]["repeats"]) == 2
    assert all(len(r["children"]) == 4 for r in details["api"]["repeats"])


@pytest.mark.slow
def test_models_smoke(ctx: Context) -> None:
    rows, details = models.run(ctx, models.select(["ok", "status_500"]), wall=2, grace=10, hard=10)
    _sane(rows)
    [row] = rows
    assert row.cases == 2 and row.unit == "s"
    assert [b["behaviour"] for b in details["behaviours"]] == ["ok", "status_500"]
    assert all(b["seconds"] > 0 and b["requests"] >= 1 for b in details["behaviours"])


@pytest.mark.slow
def test_secrets_end_to_end_through_main(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, data = tmp_path / "r.md", tmp_path / "r.json"
    assert (
        cli.main(["--scenario", "secrets", "--dir", str(tmp_path / "w"), "--out", str(out), "--json", str(data)]) == 0
    )
    results = json.loads(data.read_text())
    rows = [Row.from_json(r) for r in results["rows"]]
    _sane(rows)
    assert [r.check for r in rows] == [f"planted values in {p}" for p in leaks_places()]
    assert all(r.cases == 6 for r in rows)
    details = results["scenarios"]["secrets"]["details"]
    assert [c["argv"][0] for c in details["commands"]] == ["run", "status", "status", "status", "best"]
    markdown = out.read_text()
    assert markdown in capsys.readouterr().out
    assert cli.main(["--summarize", str(data)]) == 0
    assert capsys.readouterr().out.strip() == markdown.strip()


@pytest.mark.slow
def test_hostile_smoke(ctx: Context) -> None:
    rows, details = hostile.run(ctx, names=["atexit-print", "background-child"])
    _sane(rows)
    arms = [a.label for a in hostile.arms()]
    assert list(details["arms"]) == arms and len(rows) == 7 * len(arms)
    assert all(row.cases == 2 for row in rows if "kill -9" not in row.check)
    assert all(arm["findings"]["trials"] == 2 for arm in details["arms"].values())
    assert all(row.broken == 0 for row in rows if "fallback" not in row.scenario), rows


def test_mcp_scenario(ctx: Context) -> None:
    rows, details = mcp.run(ctx)
    _sane(rows)
    assert all(row.broken == 0 for row in rows), rows
    assert len(details["answers"]) == rows[0].cases >= 20 and 0 < details["peak_mib"] < 1024


def leaks_places() -> list[str]:
    return ["database", "CLI output", "log files", "model requests"]

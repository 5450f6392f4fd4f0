"""race: processes that open one new database at the same moment, through the API and through the CLI.

The README promises that any number of processes may share a study. The riskiest moment is the first: a
SQLite file that does not exist yet, created, migrated and given its study by several processes at once.

* *API*: ``--processes`` (8) processes released together (see :mod:`.race_driver`) each call
  ``create_study(..., load_if_exists=True)`` on the same new file and run 1-2 trials; ``--repeats`` (50)
  times. A repeat is broken if any process exits non-zero, raises, or hangs; separately, if the database does
  not hold what the processes ran (one study, trials numbered 0..n-1, as many as were run, all complete).
* *CLI*: ``--cli-runs`` (4) ``tunesmith run`` of one job file, started together on a new database, with two
  ``[[enqueue]]`` points and a study-wide trial budget; ``--cli-repeats`` (6) times. Every run must exit 0,
  each enqueued point must be evaluated exactly once, no point twice, and the study must end at exactly its
  budget. The job has a seed, as a job file started four times would: the runs propose the same points and
  must step around each other.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evals.reliability.common import (
    Context,
    Launched,
    Row,
    Supervisor,
    child_env,
    cli_argv,
    count_studies,
    job_toml,
    read_text,
    read_trials,
)
from evals.reliability.counting import duplicate_points, enqueued_counts, evaluations, integrity_problems, tally
from evals.reliability.race_driver import REPEAT_TIMEOUT_S

CLI_POINTS = ({"x": 0.25, "c": "a"}, {"x": 0.75, "c": "b"})
CLI_BUDGET = 8
CLI_TIMEOUT_S = 180.0
CLI_OBJECTIVE = """\
import time

def f(params):
    time.sleep(0.05)
    return (params["x"] - 0.4) ** 2 + (params["c"] == "b")
"""


def run(
    ctx: Context, repeats: int, processes: int, cli_repeats: int, cli_runs: int
) -> tuple[list[Row], dict[str, Any]]:
    rows: list[Row] = []
    details: dict[str, Any] = {}
    if repeats:
        api = run_api(ctx, repeats, processes)
        rows += api_rows(api, repeats, processes)
        details["api"] = api
    if cli_repeats:
        cli = [run_cli_repeat(ctx, i, cli_runs) for i in range(cli_repeats)]
        rows += cli_rows(cli, cli_runs)
        details["cli"] = cli
    return rows, details


# API -------------------------------------------------------------------------------------------------------


def run_api(ctx: Context, repeats: int, processes: int) -> dict[str, Any]:
    """Run the driver; its repeats, each with the integrity of its database, and how the driver ended."""
    folder, mark = ctx.folder("race-api"), ctx.mark("race-api")
    tmp = folder / "tmp"
    tmp.mkdir(exist_ok=True)
    argv = [
        sys.executable, "-m", "evals.reliability.race_driver", "--dir", str(folder / "repeats"),
        "--repeats", str(repeats), "--processes", str(processes), "--seed", str(ctx.seed),
    ]  # fmt: skip
    with Supervisor(mark) as supervisor:
        driver = supervisor.start(argv, cwd=folder, env=child_env(mark, tmp), log=folder / "driver")
        rc = driver.wait(repeats * (REPEAT_TIMEOUT_S + 5) + 120)
    lines = [json.loads(line) for line in read_text(driver.stdout).splitlines() if line.startswith("{")]
    found = [line for line in lines if "repeat" in line]
    for result in found:
        db = folder / "repeats" / f"repeat-{result['repeat']:03d}" / "race.db"
        result.update(_integrity(db, result["children"]))
    return {
        "driver_rc": rc,
        "driver_error": "" if rc == 0 else driver.last_error_line() or "timed out",
        "warm_up_threads": next((line["warm_up_threads"] for line in lines if "warm_up_threads" in line), None),
        "repeats": found,
    }


def _integrity(db: Path, children: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What the database holds against what the processes ran: trial counts, and the problems found."""
    trials = read_trials(db)
    run = sum(c["trials"] for c in children if c.get("rc") == 0)
    attempted = sum(c["trials"] for c in children)
    problems = integrity_problems(trials, count_studies(db), run, attempted)
    return {"stored": len(trials), "run": run, "attempted": attempted, "problems": problems}


def _failure(child: dict[str, Any]) -> str | None:
    """Why a racing process failed, in one line; None if it did not."""
    if child.get("rc") == 0 and child.get("ok"):
        return None
    if child.get("rc") is None:
        return "hung (killed)"
    return str(child.get("error") or f"exit {child.get('rc')}").splitlines()[0][:160]


def api_rows(api: dict[str, Any], repeats: int, processes: int) -> list[Row]:
    """Processes that failed, and databases that do not hold what was run; repeats the driver never reached
    count as broken in both."""
    done = api["repeats"]
    missing = repeats - len(done)
    failures = [[f for f in map(_failure, r["children"]) if f] for r in done]
    warnings = [w for r in done for c in r["children"] for w in c.get("warnings", [])]
    notes = [tally(f for repeat in failures for f in repeat)]
    if missing:
        notes.append(f"the driver stopped after {len(done)} repeats: {api['driver_error']}")
    if warnings:
        notes.append(f"{len(warnings)} warnings logged, e.g. {warnings[0][:120]}")
    worst = max((len(f) for f in failures), default=0)
    problems = [r["problems"] for r in done]
    gap = max((_gap(r) for r in done), default=0)
    return [
        Row("race", f"{processes} processes open a new file at once", repeats,
            sum(1 for f in failures if f) + missing, worst, f"of {processes} processes failed in one repeat",
            "; ".join(n for n in notes if n), "max"),
        Row("race", "the shared file holds what was run", repeats, sum(1 for p in problems if p) + missing, gap,
            "trials missing or extra in one repeat", tally(p for ps in problems for p in ps), "max"),
    ]  # fmt: skip


def _gap(repeat: dict[str, Any]) -> int:
    """How far the stored trial count is from the range the processes could have stored (0 inside it)."""
    return max(repeat["run"] - repeat["stored"], repeat["stored"] - repeat["attempted"], 0)


# CLI -------------------------------------------------------------------------------------------------------


def _write_cli_job(folder: Path) -> None:
    (folder / "objective.py").write_text(CLI_OBJECTIVE)
    tables = {
        "study": {"name": "race", "storage": "sqlite:///study.db", "seed": 0},
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}, "c": {"type": "categorical", "choices": ["a", "b"]}},
        "proposer": {"kind": "random"},
        "objective": {"function": "objective:f"},
        "budget": {"trials": CLI_BUDGET},
    }
    (folder / "job.toml").write_text(job_toml(tables, CLI_POINTS))


def run_cli_repeat(ctx: Context, index: int, runs: int) -> dict[str, Any]:
    """``runs`` CLI runs of one job on a new database, started back to back; what each did and what is stored."""
    name = f"race-cli-{index:02d}"
    folder, mark = ctx.folder(name), ctx.mark(name)
    tmp = folder / "tmp"
    tmp.mkdir(exist_ok=True)
    _write_cli_job(folder)
    env = child_env(mark, tmp)
    started = time.monotonic()
    with Supervisor(mark) as supervisor:
        launched = [
            supervisor.start(cli_argv("run", "job.toml"), cwd=folder, env=env, log=folder / f"run-{i}")
            for i in range(runs)
        ]
        codes = [_wait(one, started + CLI_TIMEOUT_S) for one in launched]
    trials = read_trials(folder / "study.db")
    return {
        "seconds": time.monotonic() - started,
        "rcs": codes,
        "errors": [one.last_error_line() if rc != 0 else "" for one, rc in zip(launched, codes, strict=True)],
        "enqueued": enqueued_counts(trials, CLI_POINTS),
        "points": len(evaluations(trials)),
        "duplicates": duplicate_points(trials),
        "finished": sum(t.finished for t in trials),
        "budget": CLI_BUDGET,
    }


def _wait(launched: Launched, deadline: float) -> int | None:
    return launched.wait(max(0.0, deadline - time.monotonic()))


def cli_rows(results: Sequence[dict[str, Any]], runs: int) -> list[Row]:
    failed = [[e or "timed out" for rc, e in zip(r["rcs"], r["errors"], strict=True) if rc != 0] for r in results]
    counts = [n for r in results for n in r["enqueued"]]
    off = [abs(r["finished"] - r["budget"]) for r in results]
    dups = [d for r in results for d in r["duplicates"].values()]
    budget_notes = ", ".join(f"repeat {i}: {r['finished']} trials" for i, r in enumerate(results) if off[i])
    return [
        Row("race", f"{runs} CLI runs on a new file exit 0", runs * len(results), sum(map(len, failed)),
            max(map(len, failed), default=0), f"of {runs} runs failed in one repeat",
            tally(f for fs in failed for f in fs), "max"),
        Row("race", "CLI: enqueued points run exactly once", len(counts), sum(1 for n in counts if n != 1),
            max(counts, default=0), "evaluations of one point",
            ", ".join(f"a point ran {n} times" for n in counts if n != 1)[:200], "max"),
        Row("race", "CLI: no point evaluated twice", sum(r["points"] for r in results), len(dups),
            max(dups, default=1), "evaluations of one point", "", "max"),
        Row("race", f"CLI: the study ends at its budget ({CLI_BUDGET})", len(results), sum(1 for n in off if n),
            max(off, default=0), "trials off the budget", budget_notes, "max"),
    ]  # fmt: skip

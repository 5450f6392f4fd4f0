"""kill9: ``tunesmith run`` killed with SIGKILL at random moments, resumed, killed again, and finally finished.

What a user does when a machine hangs is ``kill -9`` and run the job again; the README promises that this
loses nothing completed. Each set-up (a worker count, optionally an executor) gets its own study. A run is
started and killed; again and again; after the last kill the job runs once more to a small trial budget and
ends by itself. Even kills come a random 0.2-4 s after the start (start-up, recovery of the previous run's
trials, the enqueued points, the first proposals), odd ones a random 0-0.3 s after the run has started a
random 1-6 objectives (mid-evaluation, mid-record). ``requeue_interrupted`` is on, so the points of killed
trials are evaluated again and every enqueued point should end up evaluated exactly once.

The objective sleeps 0.05-0.5 s and leaves a background ``sleep`` behind, marked with its trial number and
living much longer than the scenario (``--child-life``), so that a stray left by the first kill is still
there to be counted after the final run. The harness kills every one of them when the scenario ends.

Checks (rows sum the set-ups; the notes say which set-up broke):

* *completed trials lost*: per kill, trials complete right after it that are not complete, same point and
  value, right after the next kill (or the final run). Cases: kills.
* *stray processes of killed runs*: processes the objective of a trial that was running at a kill started,
  alive after the final run. Cases: kills; broken: kills that left one.
* *children of finished trials*: the same for trials that ended normally. Cases: finished trials.
* *leftover temp folders*: ``tunesmith-trial-*`` folders in the scenario's TMPDIR after the final run, by the
  kill whose trial they belong to. Cases: kills.
* *duplicate evaluations*: points evaluated to the end more than once (see :mod:`.counting`). Cases: points.
* *enqueued points run exactly once*: finished evaluations of each ``[[enqueue]]`` point. Cases: points.
* *runs end cleanly*: a run that exits non-zero on its own before its kill, a final run that fails or times
  out, or trials still running after it. Cases: runs.
"""

from __future__ import annotations

import itertools
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from evals.reliability.common import (
    MARK_ENV,
    TRIAL_ENV,
    Context,
    Launched,
    Marked,
    Row,
    Supervisor,
    child_env,
    cli_argv,
    find_marked,
    job_toml,
    merge_rows,
    read_trials,
    wait_until,
)
from evals.reliability.counting import (
    RUNNING,
    TrialRow,
    attribute,
    duplicate_points,
    enqueued_counts,
    evaluations,
    lost_between,
    trial_of_temp_folder,
)

SPACE = {"x": {"type": "float", "low": -3.0, "high": 3.0}, "z": {"type": "float", "low": 0.0, "high": 1.0}}
ENQUEUE = ({"x": 0.5, "z": 0.25}, {"x": -1.25, "z": 0.75}, {"x": 2.0, "z": 0.5})
#: The kill runs' trial budget: never reached, so that every run is stopped by its kill.
ENDLESS = 1_000_000
#: Trials the final run adds to what the study holds, so that it ends by itself.
FINAL_TRIALS = 4
TIMED_KILL_S = (0.2, 4.0)
STARTED_OBJECTIVES = (1, 6)
RUN_TIMEOUT_S = 120.0
#: A run that has not started its objectives by then is killed anyway (a run stuck in start-up).
START_WAIT_S = 30.0

OBJECTIVE = """\
# kill9's objective: note the start, leave a long-lived marked child behind, sleep a little, score.
import json, os, random, subprocess, sys, time

x, z, trial, mark, life, started = sys.argv[1:7]
with open(started, "a") as log:
    log.write(trial + "\\n")
env = {**os.environ, "@MARK_ENV@": mark, "@TRIAL_ENV@": trial}
quiet = subprocess.DEVNULL
subprocess.Popen(["sleep", life], env=env, stdin=quiet, stdout=quiet, stderr=quiet)
time.sleep(random.uniform(0.05, 0.5))
print(json.dumps({"y": (float(x) - 0.3) ** 2 + (float(z) - 0.6) ** 2}))
""".replace("@MARK_ENV@", MARK_ENV).replace("@TRIAL_ENV@", TRIAL_ENV)


@dataclass(frozen=True)
class Setup:
    """How the killed runs evaluate: ``workers`` at once, on ``executor`` (the job file's default if None)."""

    workers: int
    executor: str | None = None

    @property
    def label(self) -> str:
        return f"w{self.workers}" + (f"-{self.executor}" if self.executor else "")

    @classmethod
    def parse(cls, text: str) -> Setup:
        """``"2"`` or ``"2:processes"``."""
        workers, _, executor = text.partition(":")
        return cls(int(workers), executor or None)


@dataclass
class Kill:
    """One kill: when it came, whether the run was still alive for it, and the trials it caught running."""

    index: int
    moment: str
    after_s: float
    killed: bool
    rc: int | None
    error: str = ""
    in_flight: list[int] = field(default_factory=list)


@dataclass
class SetupResult:
    """Everything one set-up's rows are computed from."""

    setup: Setup
    kills: list[Kill]
    snapshots: list[list[TrialRow]]
    final_trials: list[TrialRow]
    final_rc: int | None
    final_error: str
    strays: list[Marked]
    leftovers: list[str]
    seconds: float


def run(ctx: Context, kills: int, setups: Sequence[Setup], child_life: float) -> tuple[list[Row], dict[str, Any]]:
    """Every set-up with its share of the kills; one merged row per check."""
    results = []
    for setup, share in zip(setups, _shares(kills, len(setups)), strict=True):
        if share:
            rng = random.Random(f"{ctx.seed}-{setup.label}")
            results.append(run_setup(ctx, setup, share, child_life, rng))
    per_setup = [rows_for(result) for result in results]
    labels = [result.setup.label for result in results]
    rows = [merge_rows(list(group), labels) for group in zip(*per_setup, strict=True)]
    return rows, {"setups": [_details(result) for result in results]}


def _shares(total: int, parts: int) -> list[int]:
    return [total // parts + (i < total % parts) for i in range(parts)]


def run_setup(ctx: Context, setup: Setup, kills: int, child_life: float, rng: random.Random) -> SetupResult:
    """Kill a run ``kills`` times, then let one finish; everything measured is read before the clean-up."""
    started_at = time.monotonic()
    name = f"kill9-{setup.label}"
    folder, mark = ctx.folder(name), ctx.mark(name)
    tmp = folder / "tmp"
    tmp.mkdir(exist_ok=True)
    (folder / "objective.py").write_text(OBJECTIVE)
    started, db, env = folder / "started.txt", folder / "study.db", child_env(mark, tmp)
    records: list[Kill] = []
    snapshots: list[list[TrialRow]] = []
    with Supervisor(mark) as supervisor:
        _write_job(folder, setup, mark, child_life, ENDLESS)
        for index in range(kills):
            launched = supervisor.start(
                cli_argv("run", "job.toml"), cwd=folder, env=env, log=folder / f"run-{index:02d}"
            )
            record = kill_at_random_moment(launched, started, rng, index)
            snapshots.append(read_trials(db))
            record.in_flight = [t.number for t in snapshots[-1] if t.state == RUNNING]
            records.append(record)
        _write_job(folder, setup, mark, child_life, sum(t.finished for t in snapshots[-1]) + FINAL_TRIALS)
        final = supervisor.start(cli_argv("run", "job.toml"), cwd=folder, env=env, log=folder / "run-final")
        final_rc = final.wait(RUN_TIMEOUT_S)
        if final_rc is None:
            final.kill_group()  # a final run that hangs is a finding; what it left is read once it is gone
        final_error = "" if final_rc == 0 else final.last_error_line() or "no output"
        final_trials = read_trials(db)
        strays = find_marked(mark)
        leftovers = sorted(path.name for path in tmp.iterdir())
    return SetupResult(
        setup,
        records,
        snapshots,
        final_trials,
        final_rc,
        final_error,
        strays,
        leftovers,
        time.monotonic() - started_at,
    )


def _write_job(folder: Path, setup: Setup, mark: str, child_life: float, trials: int) -> None:
    study: dict[str, Any] = {
        "name": "kill9",
        "storage": "sqlite:///study.db",
        "seed": 0,
        "workers": setup.workers,
        "requeue_interrupted": True,
    }
    if setup.executor:
        study["executor"] = setup.executor
    started = str(folder / "started.txt")
    command = [sys.executable, "objective.py", "{x}", "{z}", "{trial_number}", mark, f"{child_life:g}", started]
    tables = {
        "study": study,
        "space": SPACE,
        "proposer": {"kind": "random"},
        "objective": {"command": command, "metric": "y", "timeout": "60s"},
        "budget": {"trials": trials},
    }
    (folder / "job.toml").write_text(job_toml(tables, ENQUEUE))


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except OSError:
        return 0


def kill_at_random_moment(launched: Launched, started: Path, rng: random.Random, index: int) -> Kill:
    """SIGKILL the run at a random moment (see the module docstring) unless it ended first."""
    if index % 2 == 0:
        delay = rng.uniform(*TIMED_KILL_S)
        moment = f"{delay:.2f}s after start"
        rc = launched.wait(delay)
    else:
        target, base = rng.randint(*STARTED_OBJECTIVES), _lines(started)
        wait_until(lambda: _lines(started) >= base + target or launched.poll() is not None, START_WAIT_S)
        extra = rng.uniform(0.0, 0.3)
        moment = f"{extra:.2f}s after objective {target} started"
        rc = launched.wait(extra)
    after = time.monotonic() - launched.started
    if rc is not None:
        return Kill(index, moment, after, killed=False, rc=rc, error="" if rc == 0 else launched.last_error_line())
    launched.kill()
    return Kill(index, moment, after, killed=True, rc=None)


# Rows ------------------------------------------------------------------------------------------------------


def rows_for(result: SetupResult) -> list[Row]:
    """The checks of one set-up (see the module docstring), in report order."""
    return [
        _lost_row(result),
        *_stray_rows(result),
        _folder_row(result),
        _duplicate_row(result),
        _enqueued_row(result),
        _runs_row(result),
    ]


def _lost_row(result: SetupResult) -> Row:
    states = [*result.snapshots, result.final_trials]
    lost = [lost_between(before, after) for before, after in itertools.pairwise(states)]
    notes = ", ".join(f"kill {i}: trials {numbers}" for i, numbers in enumerate(lost) if numbers)
    worst = max((len(numbers) for numbers in lost), default=0)
    broken = sum(1 for numbers in lost if numbers)
    return Row("kill9", "completed trials lost", len(lost), broken, worst, "trials at one kill", notes, "max")


def _stray_rows(result: SetupResult) -> list[Row]:
    per_kill, other = attribute([m.trial for m in result.strays], [k.in_flight for k in result.kills])
    finished = sum(t.finished for t in result.final_trials)
    killed_notes = _by_kill(result.kills, per_kill)
    other_notes = f"{other} of {finished} finished trials left a child alive" if other else ""
    return [
        Row("kill9", "stray processes of killed runs", len(per_kill), sum(1 for n in per_kill if n), sum(per_kill),
            "processes", killed_notes),
        Row("kill9", "children of finished trials", finished, min(other, finished), other, "processes", other_notes),
    ]  # fmt: skip


def _by_kill(kills: Sequence[Kill], per_kill: Sequence[int], limit: int = 3) -> str:
    """The kills that left something, with their moments: ``"kill 5 (0.09s after objective 6 started): 1"``."""
    hits = [f"kill {k.index} ({k.moment}): {n}" for k, n in zip(kills, per_kill, strict=True) if n]
    return "; ".join(hits[:limit] + ([f"{len(hits) - limit} more"] if len(hits) > limit else []))


def _folder_row(result: SetupResult) -> Row:
    numbers = [trial_of_temp_folder(name) for name in result.leftovers]
    ours = [n for n in numbers if n is not None]
    per_kill, other = attribute(ours, [k.in_flight for k in result.kills])
    notes = [_by_kill(result.kills, per_kill)]
    if other:
        notes.append(f"{other} from trials that ended normally")
    broken = sum(1 for n in per_kill if n)
    return Row("kill9", "leftover temp folders", len(per_kill), broken, len(ours), "tunesmith-trial-* folders",
               "; ".join(n for n in notes if n))  # fmt: skip


def _duplicate_row(result: SetupResult) -> Row:
    points = evaluations(result.final_trials)
    duplicates = duplicate_points(result.final_trials)
    notes = "; ".join(f"{key} x{n}" for key, n in list(duplicates.items())[:2])
    worst = max(points.values(), default=0)
    return Row("kill9", "duplicate evaluations", len(points), len(duplicates), worst, "evaluations of one point",
               notes, "max")  # fmt: skip


def _enqueued_row(result: SetupResult) -> Row:
    counts = enqueued_counts(result.final_trials, ENQUEUE)
    notes = ", ".join(f"point {i} ran {n} times" for i, n in enumerate(counts) if n != 1)
    broken = sum(1 for n in counts if n != 1)
    return Row("kill9", "enqueued points run exactly once", len(counts), broken, max(counts, default=0),
               "evaluations of one point", notes, "max")  # fmt: skip


def _runs_row(result: SetupResult) -> Row:
    crashed = [k for k in result.kills if not k.killed and k.rc != 0]
    running = [t.number for t in result.final_trials if t.state == RUNNING]
    notes = [f"run {k.index} exited {k.rc}: {k.error}" for k in crashed[:2]]
    if result.final_rc != 0:
        notes.append("final run " + ("timed out" if result.final_rc is None else f"exited {result.final_rc}"))
        notes[-1] += f": {result.final_error}"
    if running:
        notes.append(f"trials {running} still running")
    final_broken = result.final_rc != 0 or bool(running)
    return Row("kill9", "runs end cleanly", len(result.kills) + 1, len(crashed) + final_broken, len(running),
               "trials left running", "; ".join(notes))  # fmt: skip


def _details(result: SetupResult) -> dict[str, Any]:
    return {
        "setup": result.setup.label,
        "seconds": result.seconds,
        "kills": [asdict(k) for k in result.kills],
        "final_rc": result.final_rc,
        "final_error": result.final_error,
        "trials": len(result.final_trials),
        "finished": sum(t.finished for t in result.final_trials),
        "interrupted": sum(t.interrupted for t in result.final_trials),
        "complete_after_each_kill": [sum(t.state == "complete" for t in s) for s in result.snapshots],
        "strays": [{"pid": m.pid, "trial": m.trial, "argv": list(m.argv)} for m in result.strays],
        "leftover_tmp": result.leftovers,
        "enqueued_counts": enqueued_counts(result.final_trials, ENQUEUE),
        "duplicates": duplicate_points(result.final_trials),
    }

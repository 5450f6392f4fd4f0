"""Crash safety and concurrency with real processes on a real SQLite file."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent import load_study
from agent.trial import INTERRUPTED, TrialState

# Real processes killed mid-study: seconds each.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}

JOB = """
[study]
name = "crash"
direction = "minimize"
storage = "sqlite:///study.db"
seed = 1

[space]
x = {{ type = "float", low = -3, high = 3 }}
k = {{ type = "categorical", choices = ["x; touch pwned", "plain"] }}

[proposer]
kind = "random"

[objective]
command = ["{python}", "objective.py", "{{x}}", "{{k}}"]
metric = "loss"

[budget]
trials = {trials}
"""

OBJECTIVE = """
import json, sys, time
time.sleep(0.15)
print(json.dumps({"loss": float(sys.argv[1]) ** 2}))
"""


def count_trials(db: Path, state: str) -> int:
    """Trials in ``state`` in the SQLite file ``db``; 0 before the file or its tables exist."""
    if not db.exists():
        return 0
    with sqlite3.connect(db, timeout=30) as conn:
        try:
            return conn.execute("SELECT count(*) FROM trials WHERE state = ?", (state,)).fetchone()[0]
        except sqlite3.OperationalError:  # tables not created yet
            return 0


def wait_until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def test_kill_9_mid_study_loses_nothing_and_resume_finishes(tmp_path: Path) -> None:
    (tmp_path / "job.toml").write_text(JOB.format(python=sys.executable, trials=14))
    (tmp_path / "objective.py").write_text(OBJECTIVE)
    run = [sys.executable, "-m", "agent.cli", "run", "job.toml"]
    db = tmp_path / "study.db"

    first = subprocess.Popen(run, cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_until(lambda: count_trials(db, "complete") >= 5)
    first.send_signal(signal.SIGKILL)
    first.wait()
    before = {
        t.number: t.value for t in load_study("crash", f"sqlite:///{db}").trials if t.state is TrialState.COMPLETE
    }
    assert len(before) >= 5

    second = subprocess.run(run, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert "Resuming study crash" in second.stdout

    trials = load_study("crash", f"sqlite:///{db}").trials
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)) == numbers[-1] + 1
    after = {t.number: t.value for t in trials if t.state is TrialState.COMPLETE}
    assert {n: after.get(n) for n in before} == before  # every completed trial survived, unchanged
    interrupted = [t for t in trials if t.error == INTERRUPTED]
    assert len(interrupted) <= 1 and all(t.state is TrialState.FAILED for t in interrupted)
    assert len(trials) - len(interrupted) == 14  # the budget is reached; interrupted trials don't count
    assert not any(t.state is TrialState.RUNNING for t in trials)
    assert not (tmp_path / "pwned").exists()


WORKER = """
import sys, time
from agent import Categorical, Float, Space, create_study

space = Space(x=Float(0, 1), c=Categorical(["a", "b", "c"]))
study = create_study("shared", space, storage=sys.argv[1], proposer="random", load_if_exists=True)
while time.time() < float(sys.argv[2]):  # start together, to collide as much as possible
    time.sleep(0.005)
study.optimize(lambda p: p["x"], n_trials=25)
"""


def test_four_processes_share_one_study(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    start_at = str(time.time() + 3.0)
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, url, start_at], env=ENV, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    errors = [w.communicate(timeout=180)[1] for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0, 0], errors
    assert not any("locked" in e for e in errors), errors
    trials = load_study("shared", url).trials
    assert len(trials) == 100
    assert [t.number for t in trials] == list(range(100))
    assert all(t.state is TrialState.COMPLETE for t in trials)


#: A worker whose one trial runs until the test creates the file ``sys.argv[2]``: a fixed sleep there let a
#: loaded machine finish the trial before the test looked at it.
HELD_WORKER = """
import os, sys, time
from agent import Float, Space, create_study

def held(value):
    deadline = time.monotonic() + 120
    while not os.path.exists(sys.argv[2]) and time.monotonic() < deadline:
        time.sleep(0.02)
    return value

study = create_study("{name}", Space(x=Float(0, 1)), storage=sys.argv[1], proposer="random", load_if_exists=True)
study.optimize(lambda p: held({value}), n_trials=1)
"""


def test_running_trials_of_a_live_worker_are_never_touched(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    go = tmp_path / "go"
    worker = subprocess.Popen([sys.executable, "-c", HELD_WORKER.format(name="live", value=0.5), url, go], env=ENV)
    db = tmp_path / "live.db"

    wait_until(lambda: count_trials(db, "running") == 1)
    assert load_study("live", url).recover_interrupted() == []
    go.touch()
    assert worker.wait(timeout=60) == 0
    [trial] = load_study("live", url).trials
    assert trial.state is TrialState.COMPLETE


def test_an_interrupted_trial_is_evaluated_again_when_the_job_says_so(tmp_path: Path) -> None:
    job = JOB.format(python=sys.executable, trials=4).replace("seed = 1\n", "seed = 1\nrequeue_interrupted = true\n")
    (tmp_path / "job.toml").write_text(job)
    # From the second evaluation on, the objective runs until the test releases it: the run is killed with a
    # trial surely running (a 1 s sleep could end between the test's look and the kill on a loaded machine).
    calls, release = tmp_path / "calls", tmp_path / "release"
    held = f"""
import os, time
with open({str(calls)!r}, "a") as f:
    f.write(".")
deadline = time.monotonic() + 120
while os.path.getsize({str(calls)!r}) > 1 and not os.path.exists({str(release)!r}) and time.monotonic() < deadline:
    time.sleep(0.02)
"""
    (tmp_path / "objective.py").write_text(OBJECTIVE.replace("time.sleep(0.15)", held))
    db = tmp_path / "study.db"
    run = [sys.executable, "-m", "agent.cli", "run", "job.toml"]

    def running_after_one_complete() -> bool:
        return count_trials(db, "complete") >= 1 and count_trials(db, "running") == 1

    first = subprocess.Popen(run, cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(running_after_one_complete)
    first.send_signal(signal.SIGKILL)
    first.wait()
    release.touch()
    second = subprocess.run(run, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr

    trials = load_study("crash", f"sqlite:///{db}").trials
    [interrupted] = [t for t in trials if t.error == INTERRUPTED]
    again = [t for t in trials if t.number > interrupted.number and t.params == interrupted.params]
    assert len(again) == 1 and again[0].state is TrialState.COMPLETE
    assert again[0].proposer == interrupted.proposer
    assert len([t for t in trials if t.error != INTERRUPTED]) == 4


def test_a_stalled_worker_marked_interrupted_keeps_its_late_result(tmp_path: Path) -> None:
    # The fault: a run stopped (SIGSTOP, a closed laptop lid) while another run decided it was dead. Here it
    # looks dead for real (its worker is made to look remote with an hour-old heartbeat), is marked
    # interrupted, then wakes up and reports: the result must be kept, and the run must exit cleanly.
    url = f"sqlite:///{tmp_path / 'stall.db'}"
    go = tmp_path / "go"
    script = HELD_WORKER.format(name="stall", value=0.393)
    worker = subprocess.Popen([sys.executable, "-c", script, url, go], env=ENV, stderr=subprocess.PIPE, text=True)
    db = tmp_path / "stall.db"
    wait_until(lambda: count_trials(db, "running") == 1)
    worker.send_signal(signal.SIGSTOP)
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            conn.execute("UPDATE workers SET hostname = 'elsewhere', heartbeat_at = heartbeat_at - 3600")
        assert load_study("stall", url).recover_interrupted() == [0]
    finally:
        go.touch()
        worker.send_signal(signal.SIGCONT)
    _, stderr = worker.communicate(timeout=60)
    assert worker.returncode == 0, stderr
    [trial] = load_study("stall", url).trials
    assert (trial.state, trial.value, trial.late, trial.interrupted) == (TrialState.COMPLETE, 0.393, True, False)


ENQUEUED = '\n[[enqueue]]\nx = 0.5\nk = "plain"\n\n[[enqueue]]\nx = -1.5\nk = "plain"\n'


def _enqueued_runs(db: Path) -> list[int]:
    trials = load_study("crash", f"sqlite:///{db}").trials
    return [sum(t.params["x"] == x and t.proposer == "enqueued" for t in trials) for x in (0.5, -1.5)]


def test_runs_started_together_evaluate_each_enqueued_point_once(tmp_path: Path) -> None:
    (tmp_path / "job.toml").write_text(JOB.format(python=sys.executable, trials=6) + ENQUEUED)
    (tmp_path / "objective.py").write_text(OBJECTIVE)
    run = [sys.executable, "-m", "agent.cli", "run", "job.toml"]
    runs = [
        subprocess.Popen(run, cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    for process in runs:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
    assert _enqueued_runs(tmp_path / "study.db") == [1, 1]


KILLED_AFTER_ENQUEUEING = """
import os, signal
from agent.cli.run import open_job_study
from agent.jobfile import load_job

open_job_study(load_job("job.toml"))  # what `tunesmith run` does first: open the study, enqueue the job's points
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_kill_after_enqueueing_does_not_enqueue_again(tmp_path: Path) -> None:
    (tmp_path / "job.toml").write_text(JOB.format(python=sys.executable, trials=4) + ENQUEUED)
    (tmp_path / "objective.py").write_text(OBJECTIVE)
    killed = subprocess.run([sys.executable, "-c", KILLED_AFTER_ENQUEUEING], cwd=tmp_path, env=ENV, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    run = [sys.executable, "-m", "agent.cli", "run", "job.toml"]
    second = subprocess.run(run, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert _enqueued_runs(tmp_path / "study.db") == [1, 1]


POOL_RUN = """
import sys
from agent import Float, Space, create_study

study = create_study("pool", Space(x=Float(0, 1)), storage=sys.argv[1], proposer="random")
study.optimize("tests.tools.slow_objectives:sleepy", n_trials=2, workers=2, executor="processes")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel's parent-death signal is Linux's")
def test_worker_processes_die_with_a_killed_run(tmp_path: Path) -> None:
    import psutil

    url = f"sqlite:///{tmp_path / 'pool.db'}"
    run = subprocess.Popen([sys.executable, "-c", POOL_RUN, url], env=ENV, cwd=REPO)
    wait_until(lambda: count_trials(tmp_path / "pool.db", "running") == 2)
    workers = psutil.Process(run.pid).children(recursive=True)
    assert workers
    run.send_signal(signal.SIGKILL)
    run.wait()
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert alive == [], [p.cmdline() for p in alive]

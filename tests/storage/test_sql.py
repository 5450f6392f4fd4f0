"""What only a SQL storage can show: many processes on one database, locks, liveness across processes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.storage import SQLStorage
from agent.storage.liveness import WorkerIdentity, process_start_time
from agent.trial import Proposal, TrialState

# Several processes per test.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SPACE = {"x": {"type": "float", "low": 0.0, "high": 1.0}}

# One worker process: opens the storage, then starts (and finishes) trials until told or refused.
WORKER = """
import sys
from agent.storage import SQLStorage, TrialBudgetReached
from agent.trial import Proposal, TrialState
url, name, count, limit, tag = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
storage = SQLStorage(url)
study = storage.get_study(name)
storage.register_worker(tag)
for i in range(count):
    try:
        trial = storage.start_trial(study.id, tag, Proposal({"x": i / 1000}, tag), None if limit == "-" else int(limit))
    except TrialBudgetReached:
        break
    storage.finish_trial(study.id, trial.number, TrialState.COMPLETE, float(i))
"""


def run_workers(url: str, count: int, limit: int | None, processes: int = 4) -> None:
    SQLStorage(url).create_study("shared", "minimize", None, SPACE, {})
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, url, "shared", str(count), "-" if limit is None else str(limit), f"w{k}"],
            cwd=REPO,
        )
        for k in range(processes)
    ]
    assert [p.wait(timeout=180) for p in procs] == [0] * processes


def test_four_processes_get_unique_consecutive_numbers(url: str) -> None:
    run_workers(url, count=25, limit=None)
    storage = SQLStorage(url)
    trials = storage.trials(storage.get_study("shared").id)  # type: ignore[union-attr]
    assert [t.number for t in trials] == list(range(100))
    assert all(t.state is TrialState.COMPLETE for t in trials)
    assert {t.proposer for t in trials} == {"w0", "w1", "w2", "w3"}


def test_four_processes_stop_at_exactly_the_trial_budget(url: str) -> None:
    run_workers(url, count=25, limit=60)
    storage = SQLStorage(url)
    study_id = storage.get_study("shared").id  # type: ignore[union-attr]
    assert [t.number for t in storage.trials(study_id)] == list(range(60))
    assert storage.count_budgeted_trials(study_id) == 60


def test_processes_opening_a_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    # The fault: 4 processes on a new file, "database is locked" at the switch to WAL; and "already exists"
    # from create_study(load_if_exists=True). Eight processes, each creating or loading the same study.
    url = f"sqlite:///{tmp_path / 'new.db'}"
    code = (
        "import sys; from agent import Float, Space, create_study; "
        "create_study('race', Space(x=Float(0, 1)), storage=sys.argv[1], load_if_exists=True)"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, url], cwd=REPO, stderr=subprocess.PIPE) for _ in range(8)]
    outcomes = [(p.wait(timeout=120), p.stderr.read() if p.stderr else b"") for p in procs]
    assert [code for code, _ in outcomes] == [0] * 8, outcomes


def test_reads_do_not_wait_for_a_writer(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    storage = SQLStorage(f"sqlite:///{path}")
    study = storage.create_study("s", "minimize", None, SPACE, {})
    storage.register_worker("w")
    storage.start_trial(study.id, "w", Proposal({"x": 0.5}, "random"))
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        started = time.monotonic()
        assert [t.number for t in storage.trials(study.id)] == [0]
        assert storage.get_study("s") is not None and storage.spend(study.id).calls == 0
        assert time.monotonic() - started < 5  # a write would wait for the busy timeout (60 s)
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_a_live_process_on_this_host_is_alive_however_old_its_heartbeat(tmp_path: Path) -> None:
    path = tmp_path / "live.db"
    storage = SQLStorage(f"sqlite:///{path}")
    study = storage.create_study("s", "minimize", None, SPACE, {})
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        me = WorkerIdentity.of_this_process()
        storage.register_worker("stalled", WorkerIdentity(me.hostname, sleeper.pid, process_start_time(sleeper.pid)))
        storage.register_worker("reused", WorkerIdentity(me.hostname, sleeper.pid, 12345.0))  # PID now another's
        storage.register_worker("remote", WorkerIdentity("another-host", 1, 1.0))
        for worker in ("stalled", "reused", "remote"):
            storage.start_trial(study.id, worker, Proposal({"x": 0.1}, "random"))
        with sqlite3.connect(path) as conn:  # every heartbeat is an hour old
            conn.execute("UPDATE workers SET heartbeat_at = heartbeat_at - 3600")
        assert storage.recover_interrupted(study.id) == [1, 2]
        assert storage.trials(study.id)[0].state is TrialState.RUNNING
    finally:
        sleeper.kill()
        sleeper.wait()
    assert storage.recover_interrupted(study.id) == [0]

"""Hostile candidates through the real path: a job with a Code parameter, each program an ``[[enqueue]]`` point,
run by ``tunesmith run`` (and killed with ``kill -9`` and resumed). What they got is read off the host: scores
in the study, processes alive, canaries in the storage or the output, files left, connections accepted, the
victim process. (agent.testing.hostile holds the programs; evals/reliability measures the same as root and as an
unprivileged user.)"""

from __future__ import annotations

import ast
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.testing.hostile import Host, host, lingering, programs, write_job
from tests.cli.helpers import REPO, tunesmith
from tools.sandbox import sandbox_user


def named(h: Host, *names: str) -> list:
    chosen = [p for p in programs(h.targets) if p.name in names]
    assert len(chosen) == len(names)
    return chosen


def test_forging_a_score_and_a_daemon_that_rewrites_later_trials_get_nothing(tmp_path: Path) -> None:
    with host(tmp_path / "job", sandbox_user()) as h:
        chosen = named(h, "atexit-print", "daemon-rewrites-later-trials", "rewrite-evaluator", "environment")
        write_job(h.targets, chosen)
        done = tunesmith("run", "job.toml", cwd=h.targets.folder, env=h.environment, timeout=300)
        found = h.findings(done.stdout + done.stderr)
    assert done.code == 0, done.stderr
    assert found.trials == len(chosen)
    assert found.held, found


@pytest.mark.slow
def test_every_hostile_program_gets_nothing(tmp_path: Path) -> None:
    with host(tmp_path / "job", sandbox_user()) as h:
        chosen = programs(h.targets)
        write_job(h.targets, chosen)
        before = {name: (h.targets.folder / name).read_text() for name in ("job.toml", "evaluate.py")}
        done = tunesmith("run", "job.toml", cwd=h.targets.folder, env=h.environment, timeout=900)
        found = h.findings(done.stdout + done.stderr)
        after = {name: (h.targets.folder / name).read_text() for name in before}
    assert done.code == 0, done.stderr
    assert found.trials == len(chosen) >= 20
    assert found.held, found
    assert after == before, "the trusted evaluator and the job file are untouched"


def test_kill_9_mid_trial_and_resume_leave_no_process(tmp_path: Path) -> None:
    with host(tmp_path / "job", sandbox_user()) as h:
        chosen = [*named(h, "background-child"), lingering(h.targets)]
        write_job(h.targets, chosen)
        env = {**os.environ, **h.environment, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}
        run = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", "job.toml"],
            cwd=h.targets.folder,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while not _running_trial_with_survivors(h):  # the second program's processes are up
            assert run.poll() is None and time.monotonic() < deadline, "the run ended or stalled before the kill"
            time.sleep(0.2)
        run.send_signal(signal.SIGKILL)
        run.wait()
        resumed = tunesmith("run", "job.toml", cwd=h.targets.folder, env=h.environment, timeout=300)
        found = h.findings(resumed.stdout + resumed.stderr)
    assert resumed.code == 0, resumed.stderr
    assert not found.alive, f"processes left after kill -9 and resume: {found.alive}"
    assert found.held, found


def _running_trial_with_survivors(h: Host) -> bool:
    """Whether a trial is running and has started the marked processes (the moment to kill the run)."""
    if not h.targets.storage.exists():
        return False
    with sqlite3.connect(h.targets.storage) as db:
        try:
            running = db.execute("SELECT count(*) FROM trials WHERE state = 'running' AND number = 1").fetchone()[0]
        except sqlite3.OperationalError:  # the schema is being made
            return False
    return bool(running) and len(h.findings().alive) >= 2


def test_without_bubblewrap_the_weaker_confinement_is_said_in_the_feedback_and_status(tmp_path: Path) -> None:
    with host(tmp_path / "job", sandbox_user()) as h:
        write_job(h.targets, named(h, "atexit-print"))
        weaker = {**h.environment, "TUNESMITH_BWRAP": "none"}
        done = tunesmith("run", "job.toml", cwd=h.targets.folder, env=weaker, timeout=300)
        status = tunesmith("status", "job.toml", cwd=h.targets.folder)
        shown = tunesmith("show", "job.toml", "0", cwd=h.targets.folder)
    assert done.code == 0, done.stderr
    assert "Sandbox: 1 trial(s) ran with less enforced than asked for:" in status.stdout, status.stdout
    assert "weaker confinement: bubblewrap switched off (TUNESMITH_BWRAP=none)" in status.stdout
    assert "[sandbox] weaker confinement: bubblewrap switched off" in shown.stdout, shown.stdout


def test_every_hostile_program_is_valid_python_down_to_the_code_it_starts(tmp_path: Path) -> None:
    """A program with a syntax error fails at import and attacks nothing: the tests above would hold for nothing."""
    with host(tmp_path / "job", sandbox_user()) as h:
        chosen = programs(h.targets)
    for program in chosen:
        tree = ast.parse(program.source, program.name)
        for node in ast.walk(tree):  # the code a program hands to a new interpreter (the daemon's loop)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("import "):
                ast.parse(node.value, f"{program.name} (the code it starts)")
    assert len(chosen) >= 20 and len({p.category for p in chosen}) == 9

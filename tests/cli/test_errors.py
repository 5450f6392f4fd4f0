"""Faults of the environment and bad storage URLs reach the user as one line with the fix, never a traceback.

Exit codes: 2 for input to fix (a URL), 1 for an environment that failed (a database that is unreachable,
read-only or out of disk). Each fault is real: a refused port, an immutable file, a file-size limit.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each test starts the command in a new process

REPO = Path(__file__).resolve().parents[2]

JOB = """\
[study]
name = "{name}"
direction = "minimize"
storage = "{storage}"

[space]
x = {{ type = "float", low = -3, high = 3 }}

[proposer]
kind = "random"

[objective]
function = "objective:square"

[budget]
trials = {trials}
"""


def run(
    folder: Path,
    storage: str,
    trials: int = 3,
    name: str = "errors",
    limit: Callable[[], None] | None = None,
    function: str = "square",
    command: tuple[str, ...] = ("run", "job.toml"),
    encoding: str = "utf-8",
) -> subprocess.CompletedProcess[str]:
    (folder / "objective.py").write_text(
        "def square(p):\n    return p['x'] ** 2\n\ndef cube(p):\n    return p['x'] ** 3\n"
    )
    job = JOB.format(name=name, storage=storage, trials=trials).replace("objective:square", f"objective:{function}")
    (folder / "job.toml").write_text(job)
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "300", "NO_COLOR": "1", "PYTHONIOENCODING": encoding}
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *command],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


@pytest.mark.parametrize(
    ("storage", "says"),
    [
        ("foo://x/y", "unknown kind of database 'foo'; use sqlite:///FILE.db or postgresql://USER@HOST/DATABASE"),
        ("postgresql+psycopg2://u@127.0.0.1:1/db", "its driver psycopg2 is not installed"),
        ("not a url", "is not a database URL"),
    ],
)
def test_a_bad_storage_url_is_bad_input(tmp_path: Path, storage: str, says: str) -> None:
    result = run(tmp_path, storage)
    assert result.returncode == 2
    assert says in one_line_error(result)


def test_an_unreachable_server_is_an_environment_failure_and_its_password_is_not_shown(tmp_path: Path) -> None:
    result = run(tmp_path, "postgresql://alice:PASSWORD987@127.0.0.1:1/db")
    line = one_line_error(result)
    assert result.returncode == 1
    assert "Connection refused (is the database server running, and are the host and port right?)" in line
    assert "PASSWORD987" not in result.stdout + result.stderr


def test_a_folder_that_cannot_be_created(tmp_path: Path) -> None:
    result = run(tmp_path, "sqlite:////proc/no-such-folder/study.db")
    assert result.returncode == 1
    assert "cannot create the folder of /proc/no-such-folder/study.db" in one_line_error(result)


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make ``path`` read-only even for root (who ignores file modes): the immutable attribute."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        path.parent.chmod(0o555)
        try:
            yield
        finally:
            path.parent.chmod(0o755)
            path.chmod(0o644)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)]).returncode != 0:
        pytest.skip("running as root on a file system without chattr +i: no way to make a file read-only")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_read_only_database_keeps_its_trials(tmp_path: Path) -> None:
    assert run(tmp_path, "sqlite:///study.db").returncode == 0
    with read_only(tmp_path / "study.db"):
        result = run(tmp_path, "sqlite:///study.db", trials=6)
    assert result.returncode == 1
    assert "attempt to write a readonly database (the database is read-only" in one_line_error(result)
    assert trial_states(tmp_path / "study.db") == ["complete"] * 3


def test_a_full_disk_mid_study_is_one_line_and_loses_no_finished_trial(tmp_path: Path) -> None:
    assert run(tmp_path, "sqlite:///study.db").returncode == 0
    room = sum(p.stat().st_size for p in tmp_path.glob("study.db*")) + 64 * 1024

    def small_disk() -> None:  # every file this process writes stops growing past `room` bytes
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (room, room))

    result = run(tmp_path, "sqlite:///study.db", trials=2000, limit=small_disk)
    assert result.returncode == 1
    assert "finished trials are kept" in one_line_error(result)
    states = trial_states(tmp_path / "study.db")
    assert 3 < len(states) < 2000 and states[:3] == ["complete"] * 3
    assert set(states) <= {"complete", "running"}  # the trial being recorded when the disk filled
    assert run(tmp_path, "sqlite:///study.db", trials=len(states) + 2).returncode == 0  # space again: it resumes


def trial_states(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return [row[0] for row in conn.execute("SELECT state FROM trials ORDER BY number")]


def test_a_unicode_study_name_on_an_ascii_terminal(tmp_path: Path) -> None:
    ran = run(tmp_path, "sqlite:///study.db", name="Ωμέγα-run", encoding="ascii")
    status = run(
        tmp_path, "sqlite:///study.db", command=("status", "--storage", "sqlite:///study.db"), encoding="ascii"
    )
    assert (ran.returncode, status.returncode) == (0, 0), ran.stderr + status.stderr
    assert "\\u03a9\\u03bc" in status.stdout  # shown escaped, not a crash


def test_another_objective_under_a_study_name_is_warned_about(tmp_path: Path) -> None:
    assert run(tmp_path, "sqlite:///study.db").returncode == 0
    again = run(tmp_path, "sqlite:///study.db", trials=4, function="cube")
    assert again.returncode == 0
    warning = " ".join((again.stdout + again.stderr).split())
    assert 'was run with another objective (function = "objective:square"); this run evaluates' in warning
    assert 'function = "objective:cube"' in warning

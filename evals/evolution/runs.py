"""Copy an example, run it with the real CLI, time it; and the sandbox's own cost, measured apart.

Every run leads its own process group (``start_new_session``): past its cap the harness sends SIGTERM (which the
CLI takes as Ctrl-C: it stops its trials and records them interrupted), then SIGKILL to the group if it lingers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evals.reliability.common import job_toml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
#: Not copied with an example: a study the user ran there, caches, trial folders left by a killed run.
IGNORE = shutil.ignore_patterns("*.db", "*.db-wal", "*.db-shm", "__pycache__", "tunesmith-trial-*")
POLL_S = 5.0
#: Seconds a run may take to exit after SIGTERM before its process group is killed.
GRACE_S = 30.0


def log(message: str) -> None:
    print(f"[evolution {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def prepare(example: str, dest: Path, *, bo: bool = False) -> Path:
    """A copy of ``examples/<example>`` at ``dest``; with ``bo``, its job's proposer is plain ``bo`` without a model
    (every other table as it is)."""
    shutil.copytree(EXAMPLES / example, dest, ignore=IGNORE)
    if bo:
        job = tomllib.loads((dest / "job.toml").read_text())
        job["proposer"] = {"kind": "bo"}
        (dest / "job.toml").write_text(job_toml(job))
    return dest


def _finished(db: Path) -> int:
    """Trials finished so far (read-only; 0 while the file or its tables do not exist yet)."""
    if not db.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
            return int(conn.execute("SELECT count(*) FROM trials WHERE finished_at IS NOT NULL").fetchone()[0])
    except sqlite3.Error:
        return 0


def run_cli(folder: Path, trials: int, cap_s: float, label: str) -> dict[str, Any]:
    """``python -m agent.cli run job.toml --trials N --storage bench.db`` in ``folder``; progress on stderr.

    Returns the exit status, the wall time (process start to exit, the model server's start included), whether
    the cap cut it short, and the end of its output.
    """
    argv = [sys.executable, "-m", "agent.cli", "run", "job.toml", "--trials", str(trials), "--storage", "bench.db"]
    pythonpath = os.pathsep.join(p for p in [str(ROOT), os.environ.get("PYTHONPATH", "")] if p)
    env = {**os.environ, "PYTHONPATH": pythonpath, "COLUMNS": "160"}
    out = (folder / "cli.log").open("wb")
    started = time.monotonic()
    proc = subprocess.Popen(
        argv, cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
    )
    cut, killed, shown = False, False, -1
    termed = 0.0
    try:
        while proc.poll() is None:
            elapsed = time.monotonic() - started
            done = _finished(folder / "bench.db")
            if done != shown:
                log(f"{label}: {done}/{trials} trials finished ({elapsed:.0f} s)")
                shown = done
            if elapsed > cap_s and not cut:
                log(f"{label}: past the cap of {cap_s:.0f} s: stopping the run (SIGTERM)")
                cut, termed = True, time.monotonic()
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
            if cut and not killed and time.monotonic() - termed > GRACE_S:
                log(f"{label}: still running {GRACE_S:.0f} s after SIGTERM: SIGKILL")
                killed = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(POLL_S)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        out.close()
    ended = time.monotonic()
    wall = ended - started
    output = (folder / "cli.log").read_text(errors="replace")
    log(f"{label}: exit {proc.returncode} after {wall:.0f} s, {_finished(folder / 'bench.db')} trials finished")
    return {
        "argv": ["python", *argv[1:]],
        "exit": proc.returncode,
        "wall_s": wall,
        "cut_at_cap": cut,
        "killed_after_grace": killed,
        "exit_s_after_sigterm": ended - termed if cut and not killed else None,
        "output_tail": output[-1500:],
    }


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def sandbox_overhead(folder: Path, repeats: int = 10) -> dict[str, Any]:
    """The sandbox's own cost on ``folder``: ``repeats`` times, enter (copy the folder), run
    ``python -c pass`` and exit (remove the copy), against the same command run plainly with subprocess in
    the folder. Medians, in seconds; ``overhead_s`` is the difference of the medians."""
    from tools.sandbox import Sandbox

    argv = [sys.executable, "-c", "pass"]
    plain = [_timed(lambda: subprocess.run(argv, cwd=folder, check=True)) for _ in range(repeats)]
    enter, run, leave, total = [], [], [], []
    notes: tuple[str, ...] = ()
    isolated = None
    for _ in range(repeats):
        started = time.perf_counter()
        box = Sandbox(folder)
        box.__enter__()
        entered = time.perf_counter()
        try:
            result = box.run(argv, timeout_s=60)
        finally:
            ran = time.perf_counter()
            box.__exit__(None, None, None)
        ended = time.perf_counter()
        if result.returncode != 0:
            raise RuntimeError(f"python -c pass in the sandbox exited {result.returncode}: {result.stderr[-300:]}")
        notes, isolated = result.notes, result.network_isolated
        enter.append(entered - started)
        run.append(ran - entered)
        leave.append(ended - ran)
        total.append(ended - started)
    med = statistics.median
    return {
        "folder": folder.name,
        "repeats": repeats,
        "plain_s": med(plain),
        "enter_s": med(enter),
        "run_s": med(run),
        "exit_s": med(leave),
        "sandbox_s": med(total),
        "overhead_s": med(total) - med(plain),
        "network_isolated": isolated,
        "notes": list(notes),
    }

"""What every scenario shares: report rows, the processes the harness starts, markers, job files, trials.

Why a supervisor and a marker: a scenario kills ``tunesmith`` on purpose, so the objectives it started live
on as orphans in their own sessions; a harness that only killed what it launched would leave them running
and would count them in the next scenario. Every launch leads its own process group, and every process
carries :data:`MARK_ENV` (inherited by whatever it starts), so the supervisor can kill it all at the end and a
scenario can count the strays that are its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from evals.reliability.counting import TrialRow

#: Set on every process the harness starts (inherited by their children): ``<run>/<scenario>``.
MARK_ENV = "TUNESMITH_RELIABILITY_MARK"
#: Set by the objectives on the background children they start: the trial number that started it.
TRIAL_ENV = "TUNESMITH_RELIABILITY_TRIAL"
#: The root of the harness's own checkout (``evals`` is imported from there).
HARNESS_ROOT = Path(__file__).resolve().parents[2]


# Report rows -----------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the report: a check, the cases it was tried on, how many broke, the worst figure.

    ``worst`` is a number with its unit; ``combine`` says how rows of the same check from several set-ups
    merge (``"sum"`` for totals such as stray processes, ``"max"`` for a per-case worst such as seconds).
    """

    scenario: str
    check: str
    cases: int
    broken: int
    worst: float | None
    unit: str = ""
    notes: str = ""
    combine: str = "sum"

    @property
    def held(self) -> int:
        return self.cases - self.broken

    @property
    def worst_text(self) -> str:
        if self.worst is None:
            return "-"
        return f"{self.worst:g} {self.unit}".strip()

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "held": self.held, "worst_text": self.worst_text}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Row:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def merge_rows(rows: Sequence[Row], labels: Sequence[str]) -> Row:
    """One row from the same check on several set-ups; the notes keep each set-up's own, by label."""
    first = rows[0]
    values = [r.worst for r in rows if r.worst is not None]
    worst = (sum(values) if first.combine == "sum" else max(values)) if values else None
    notes = "; ".join(f"{label}: {r.notes}" for label, r in zip(labels, rows, strict=True) if r.notes)
    return Row(
        first.scenario,
        first.check,
        sum(r.cases for r in rows),
        sum(r.broken for r in rows),
        worst,
        first.unit,
        notes,
        first.combine,
    )


def error_row(scenario: str, exc: BaseException) -> Row:
    """The row of a scenario the harness itself could not finish: one broken case, the error in the notes."""
    return Row(scenario, "harness error", 1, 1, None, notes=f"{type(exc).__name__}: {exc}"[:300])


@dataclass(frozen=True)
class Context:
    """Where a scenario works: its own folder under the run's root, and its own mark under the run's."""

    root: Path
    run_mark: str
    seed: int

    def folder(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def mark(self, name: str) -> str:
        return f"{self.run_mark}/{name}"


@dataclass
class Outcome:
    """A scenario's result: its rows, the details behind them (the JSON), and how long it took."""

    name: str
    rows: list[Row]
    details: dict[str, Any]
    seconds: float = 0.0


# Processes -------------------------------------------------------------------------------------------------


def python_path() -> str:
    """PYTHONPATH for child processes: the tunesmith being measured first, then this harness's checkout."""
    import agent

    roots = [str(Path(agent.__file__).resolve().parents[1]), str(HARNESS_ROOT)]
    inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join(dict.fromkeys([*roots, *inherited]))


def cli_argv(*args: str) -> list[str]:
    """The ``tunesmith`` command of the tree being measured (``python -m agent.cli`` is its entry point)."""
    return [sys.executable, "-m", "agent.cli", *args]


def child_env(mark: str, tmpdir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment plus the marker, a private TMPDIR and the import path of the tree being measured."""
    env = {**os.environ, MARK_ENV: mark, "TMPDIR": str(tmpdir), "PYTHONPATH": python_path(), "COLUMNS": "160"}
    env.update(extra or {})
    return env


@dataclass
class Launched:
    """A process the supervisor started, with the files its output goes to."""

    argv: list[str]
    proc: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> int | None:
        return self.proc.poll()

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if it is still running after ``timeout`` seconds."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """SIGKILL the process alone (what ``kill -9 PID`` does): its children are left to fend for themselves."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)

    def output(self) -> str:
        return read_text(self.stdout) + read_text(self.stderr)

    def last_error_line(self) -> str:
        """The last non-empty line of stderr (then stdout): what a failed run said last."""
        for path in (self.stderr, self.stdout):
            lines = [line.strip() for line in read_text(path).splitlines() if line.strip()]
            if lines:
                return lines[-1][:200]
        return ""


def read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


class Supervisor:
    """Starts every process of a scenario and, on close, kills all of them and everything carrying its mark.

    Each launch leads its own session (``start_new_session``), so killing its group never touches the
    harness; processes that escaped the group (objectives start their own sessions) are found by the mark.
    """

    def __init__(self, mark: str) -> None:
        self.mark = mark
        self.launched: list[Launched] = []

    def start(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        log: Path,
        preexec: Callable[[], None] | None = None,
    ) -> Launched:
        """Start ``argv`` with stdout and stderr in ``<log>.out`` and ``<log>.err`` (``preexec`` run in the child
        before it: to start it as another user)."""
        out, err = log.with_name(log.name + ".out"), log.with_name(log.name + ".err")
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
                preexec_fn=preexec,
            )
        launched = Launched(list(argv), proc, out, err)
        self.launched.append(launched)
        return launched

    def close(self) -> int:
        """Kill every launched group and every marked process; returns how many marked ones were found."""
        for launched in self.launched:
            if launched.poll() is None:
                launched.kill_group()
        return kill_marked(self.mark)

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@dataclass(frozen=True)
class Marked:
    """A live process that carries a mark: its pid, the trial that started it (if it says), its argv."""

    pid: int
    trial: int | None
    argv: tuple[str, ...]


def find_marked(mark: str) -> list[Marked]:
    """Live processes whose :data:`MARK_ENV` is ``mark`` (or below it), or with ``mark`` as an argument.

    The argv test finds an objective even if an evaluator strips its environment: the objectives of the
    scenarios receive the mark as an argument. Zombies are not alive and are skipped.
    """
    import psutil

    found = []
    for process in psutil.process_iter():
        if process.pid == os.getpid():
            continue
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
            env = process.environ()
            argv = tuple(process.cmdline())
        except psutil.Error:
            continue
        value = env.get(MARK_ENV, "")
        if value == mark or value.startswith(mark + "/") or mark in argv:
            trial = env.get(TRIAL_ENV)
            found.append(Marked(process.pid, int(trial) if trial and trial.isdigit() else None, argv))
    return found


def kill_marked(mark: str) -> int:
    """SIGKILL every live process carrying ``mark``; returns how many there were."""
    found = find_marked(mark)
    for marked in found:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(marked.pid, signal.SIGKILL)
    return len(found)


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


# Job files -------------------------------------------------------------------------------------------------


def toml_value(value: Any) -> str:
    """A Python value as TOML (strings through JSON, whose escapes TOML basic strings share)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def job_toml(tables: Mapping[str, Mapping[str, Any]], enqueue: Iterable[Mapping[str, Any]] = ()) -> str:
    """A job file: each table with its keys, then one ``[[enqueue]]`` table per point."""
    lines = []
    for name, table in tables.items():
        lines += [f"[{name}]", *(f"{key} = {toml_value(value)}" for key, value in table.items()), ""]
    for point in enqueue:
        lines += ["[[enqueue]]", *(f"{key} = {toml_value(value)}" for key, value in point.items()), ""]
    return "\n".join(lines)


# Trials ----------------------------------------------------------------------------------------------------


def read_trials(db: Path) -> list[TrialRow]:
    """Every trial in a SQLite file, read with sqlite3 so that reading never creates, upgrades or locks it.

    ``mode=rw`` never creates a missing file (a harness that created an empty one would change what the
    next run does); a file whose tables do not exist yet holds no trials.
    """
    if not db.exists():
        return []
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=rw", uri=True, timeout=30)) as conn:
            conn.row_factory = sqlite3.Row
            rows = conn.execute("SELECT * FROM trials ORDER BY number").fetchall()
    except sqlite3.OperationalError:
        return []
    return [TrialRow.from_db(dict(row)) for row in rows]


def count_studies(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=rw", uri=True, timeout=30)) as conn:
            return int(conn.execute("SELECT count(*) FROM studies").fetchone()[0])
    except sqlite3.OperationalError:
        return 0

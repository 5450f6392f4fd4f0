"""The hostile-candidate scenario: every program of :mod:`agent.testing.hostile` run by ``tunesmith run`` through a
job with a Code parameter, with bubblewrap and without it (the weaker fallback), then once more killed with
``kill -9`` mid-trial and resumed. Each figure is read off the host afterwards: forged scores in the study,
processes still alive, canaries in the storage or the output, files left outside the copy, connections the
host's sockets accepted, the victim process of the sandbox user.

Run as root, the programs run as ``nobody``; a second arm runs tunesmith itself as an unprivileged user (then
the programs run as that user, beside a victim process of the same user).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.testing.hostile import Findings, Host, host, lingering, programs, write_job
from evals.reliability.common import MARK_ENV, Context, Launched, Row, Supervisor, cli_argv, python_path
from tools.bubblewrap import BWRAP_ENV, Bubblewrap, bubblewrap
from tools.sandbox import as_user, sandbox_user

RUN_TIMEOUT_S = 900.0
SCENARIO = "hostile"


#: Who runs tunesmith in the unprivileged arm (when the benchmark runs as root): the candidate then runs as
#: that user too, beside a victim process of the same user.
UNPRIVILEGED = (65534, 65534)


@dataclass(frozen=True)
class Arm:
    """One way of running the programs: a label, variables for tunesmith, and the user it runs as (None: us)."""

    label: str
    extra: dict[str, str]
    user: tuple[int, int] | None = None


def arms() -> list[Arm]:
    """With bubblewrap as we are; as an unprivileged user when we are root; and without bubblewrap."""
    chosen = []
    if isinstance(bubblewrap(sandbox_user()), Bubblewrap):
        chosen.append(Arm("root, bubblewrap" if os.geteuid() == 0 else "bubblewrap", {}))
    if os.geteuid() == 0 and isinstance(bubblewrap(None), Bubblewrap):
        chosen.append(Arm("unprivileged user, bubblewrap", {}, UNPRIVILEGED))
    chosen.append(Arm("fallback (no bubblewrap)", {BWRAP_ENV: "none"}))
    return chosen


def run(ctx: Context, names: Sequence[str] | None = None) -> tuple[list[Row], dict[str, Any]]:
    """Every arm on every program (or on those ``names``: a smoke test's few)."""
    strong = bubblewrap(sandbox_user())
    rows: list[Row] = []
    details: dict[str, Any] = {"bubblewrap": strong if isinstance(strong, str) else strong.path, "arms": {}}
    for i, arm in enumerate(arms()):
        folder = ctx.folder(f"{SCENARIO}-{i}")
        victim = arm.user if arm.user is not None else sandbox_user()
        with _reachable(folder, arm) as folder, host(folder / "job", victim, owner=arm.user) as h:
            chosen = [p for p in programs(h.targets) if names is None or p.name in names]
            write_job(h.targets, chosen)
            found, code = _run(ctx, h, arm, folder)
            killed = _kill_and_resume(ctx, h, arm, folder / "kill9")
        details["arms"][arm.label] = {"rc": code, "findings": found.__dict__, "kill9": killed.__dict__}
        rows += _rows(arm.label, len(chosen), found, killed)
    return rows, details


@contextlib.contextmanager
def _reachable(folder: Path, arm: Arm) -> Iterator[Path]:
    """Where the arm works: ``folder``, or for another user a fresh folder in the system's temporary directory
    (the harness's own may lie in one closed to others, as pytest's does), removed afterwards."""
    if arm.user is None:
        yield folder
        return
    own = Path(tempfile.mkdtemp(prefix="tunesmith-hostile-"))
    own.chmod(0o755)
    try:
        yield own
    finally:
        shutil.rmtree(own, ignore_errors=True)


def _start(supervisor: Supervisor, ctx: Context, h: Host, arm: Arm, log: Path, *args: str) -> Launched:
    """``tunesmith ARGS`` in the job's folder, as the arm's user (its files made that user's first)."""
    env = {**os.environ, MARK_ENV: ctx.mark(SCENARIO), "PYTHONPATH": python_path(), **h.environment, **arm.extra}
    preexec = None
    if arm.user is not None:
        home = log.parent / "home"
        home.mkdir(exist_ok=True)
        for path in [log.parent, *log.parent.rglob("*"), h.targets.folder, *h.targets.folder.rglob("*")]:
            os.lchown(path, *arm.user)
        env["HOME"] = str(home)
        plan = as_user(arm.user, Path(sys.executable).resolve())
        preexec = functools.partial(plan.confine, os.open(os.devnull, os.O_WRONLY))
    return supervisor.start(cli_argv(*args), cwd=h.targets.folder, env=env, log=log, preexec=preexec)


def _run(ctx: Context, h: Host, arm: Arm, folder: Path) -> tuple[Findings, int | None]:
    with Supervisor(ctx.mark(SCENARIO)) as supervisor:
        one = _start(supervisor, ctx, h, arm, folder / "run", "run", "job.toml")
        code = one.wait(RUN_TIMEOUT_S)
        return h.findings(one.output()), code


def _kill_and_resume(ctx: Context, h: Host, arm: Arm, folder: Path) -> Findings:
    """A fresh study of one program that leaves a daemon and a background child, killed with ``kill -9`` while
    they run, then resumed: what is alive afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    target = h.targets
    h2 = Host(dataclasses.replace(target, storage=folder / "kill9.db"))
    write_job(h2.targets, [lingering(target)], name="hostile-kill9")
    with Supervisor(ctx.mark(SCENARIO)) as supervisor:
        one = _start(supervisor, ctx, h2, arm, folder / "a", "run", "job.toml")
        deadline = time.monotonic() + 120
        while len(h2.findings().alive if _has_trials(h2) else []) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        os.kill(one.pid, signal.SIGKILL)
        one.wait(30)
        again = _start(supervisor, ctx, h2, arm, folder / "b", "run", "job.toml", "--trials", "2")
        again.wait(RUN_TIMEOUT_S)
        return h2.findings(again.output())


def _has_trials(h: Host) -> bool:
    try:
        with sqlite3.connect(h.targets.storage) as db:
            return bool(db.execute("SELECT count(*) FROM trials").fetchone()[0])
    except sqlite3.Error:
        return False


def _rows(label: str, cases: int, found: Findings, killed: Findings) -> list[Row]:
    def row(check: str, broken: int, worst: float, unit: str, notes: str = "") -> Row:
        return Row(f"{SCENARIO}: {label}", check, cases, broken, worst, unit, notes)

    return [
        row("forged scores", found.forged, found.forged, "trials"),
        row("processes alive after the run", min(cases, len(found.alive)), len(found.alive), "processes"),
        row(
            "secrets or storage bytes in the study or output",
            len(found.leaked),
            len(found.leaked),
            "canaries",
            ", ".join(found.leaked),
        ),
        row(
            "files left outside the copy",
            min(cases, len(found.left)),
            len(found.left),
            "files",
            ", ".join(found.left)[:300],
        ),
        row("connections to the host's sockets", min(cases, found.connections), found.connections, "connections"),
        row("host process of the sandbox user killed", int(found.victim_killed), int(found.victim_killed), ""),
        Row(
            f"{SCENARIO}: {label}",
            "processes alive after kill -9 + resume",
            1,
            int(bool(killed.alive)),
            len(killed.alive),
            "processes",
        ),
    ]

"""The hostile-candidate scenario: every program of :mod:`agent.testing.hostile` run by ``tunesmith run`` through a
job with a Code parameter, with bubblewrap and without it (the weaker fallback), then once more killed with
``kill -9`` mid-trial and resumed. Each figure is read off the host afterwards: forged scores in the study,
processes still alive, canaries in the storage or the output, files left outside the copy, connections the
host's sockets accepted, the victim process of the sandbox user.

Run as root here, the programs run as ``nobody``. As an unprivileged user: see the report's notes.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

from agent.testing.hostile import Findings, Host, host, lingering, programs, write_job
from evals.reliability.common import MARK_ENV, Context, Row, Supervisor, cli_argv, python_path
from tools.bubblewrap import BWRAP_ENV, Bubblewrap, bubblewrap
from tools.sandbox import sandbox_user

RUN_TIMEOUT_S = 900.0
SCENARIO = "hostile"


def run(ctx: Context) -> tuple[list[Row], dict[str, Any]]:
    strong = bubblewrap(sandbox_user())
    arms = {"bubblewrap": {}, "fallback (no bubblewrap)": {BWRAP_ENV: "none"}}
    if not isinstance(strong, Bubblewrap):
        arms.pop("bubblewrap")
    rows: list[Row] = []
    details: dict[str, Any] = {"bubblewrap": strong if isinstance(strong, str) else strong.path, "arms": {}}
    for label, extra in arms.items():
        folder = ctx.folder(f"{SCENARIO}-{len(details['arms'])}")
        with host(folder / "job", sandbox_user()) as h:
            chosen = programs(h.targets)
            write_job(h.targets, chosen)
            found, code = _run(ctx, h, extra, folder)
            killed = _kill_and_resume(ctx, h, extra, folder / "kill9")
        details["arms"][label] = {"rc": code, "findings": found.__dict__, "kill9": killed.__dict__}
        rows += _rows(label, len(chosen), found, killed)
    return rows, details


def _env(ctx: Context, h: Host, extra: dict[str, str]) -> dict[str, str]:
    return {**os.environ, MARK_ENV: ctx.mark(SCENARIO), "PYTHONPATH": python_path(), **h.environment, **extra}


def _run(ctx: Context, h: Host, extra: dict[str, str], folder: Path) -> tuple[Findings, int | None]:
    with Supervisor(ctx.mark(SCENARIO)) as supervisor:
        one = supervisor.start(
            cli_argv("run", "job.toml"), cwd=h.targets.folder, env=_env(ctx, h, extra), log=folder / "run"
        )
        code = one.wait(RUN_TIMEOUT_S)
        return h.findings(one.output()), code


def _kill_and_resume(ctx: Context, h: Host, extra: dict[str, str], folder: Path) -> Findings:
    """A fresh study of one program that leaves a daemon and a background child, killed with ``kill -9`` while
    they run, then resumed: what is alive afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    target = h.targets
    h2 = Host(type(target)(**{**target.__dict__, "storage": folder / "kill9.db"}))
    write_job(h2.targets, [lingering(h.targets)], name="hostile-kill9")
    with Supervisor(ctx.mark(SCENARIO)) as supervisor:
        one = supervisor.start(
            cli_argv("run", "job.toml"), cwd=target.folder, env=_env(ctx, h, extra), log=folder / "a"
        )
        deadline = time.monotonic() + 120
        while len(h2.findings().alive if _has_trials(h2) else []) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        os.kill(one.pid, signal.SIGKILL)
        one.wait(30)
        again = supervisor.start(
            cli_argv("run", "job.toml", "--trials", "2"), cwd=target.folder, env=_env(ctx, h, extra), log=folder / "b"
        )
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

"""The API half of the race scenario, run in a process of its own: ``python -m evals.reliability.race_driver``.

Why forks from one process: eight fresh interpreters importing tunesmith take seconds each on two cores, so
"started together" would mean "started within seconds". This driver imports and warms tunesmith once, then
for each repeat forks the processes, which block on one pipe; closing it releases all of them within
microseconds, and each opens the same new SQLite file with ``create_study(load_if_exists=True)`` and runs 1-2
trials. The driver prints one JSON line per repeat; the harness reads them (so a driver that dies still leaves
every finished repeat on record). It runs apart from the harness because forking a process with threads (the
harness may hold a model server's) is unsafe.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import signal
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

#: A repeat's processes are killed (and count as failed) after this long.
REPEAT_TIMEOUT_S = 60.0


class _Remember(logging.Handler):
    """Keeps the warnings a child logs: retries and fallbacks are not failures, but worth a note."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}"[:300])


def _space() -> Any:
    from agent import Categorical, Float, Space

    return Space(x=Float(0.0, 1.0), c=Categorical(["a", "b", "c"]))


def _objective(params: Any) -> float:
    return float(params["x"])


def _open_and_run(url: str, n_trials: int) -> None:
    from agent import create_study

    study = create_study("race", _space(), storage=url, proposer="random", load_if_exists=True)
    try:
        study.optimize(_objective, n_trials=n_trials)
    finally:
        study.close()


def _child(gate: int, url: str, n_trials: int, report: Path) -> NoReturn:
    """One racing process: wait at the gate, open, run; the report says how it went. Never returns."""
    code = 1
    remember = _Remember()
    logging.getLogger().addHandler(remember)
    result: dict[str, Any] = {"ok": False}
    try:
        os.read(gate, 1)  # blocks until the driver closes the pipe: every child starts at once
        _open_and_run(url, n_trials)
        result, code = {"ok": True}, 0
    except BaseException as exc:  # anything at all is a failure of this process, to be reported
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500], "traceback": traceback.format_exc()}
    finally:
        with contextlib.suppress(BaseException):
            report.write_text(json.dumps({**result, "warnings": remember.lines}))
        os._exit(code)  # no atexit handlers or buffers of the parent's: they belong to the driver


def _reap(pids: Sequence[int], timeout: float) -> dict[int, int | None]:
    """Exit codes by pid; None for a process that had to be killed after ``timeout`` seconds."""
    codes: dict[int, int | None] = {}
    deadline = time.monotonic() + timeout
    while len(codes) < len(pids) and time.monotonic() < deadline:
        for pid in pids:
            if pid not in codes:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    codes[pid] = os.waitstatus_to_exitcode(status)
        time.sleep(0.005)
    for pid in pids:
        if pid not in codes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            codes[pid] = None
    return codes


def one_repeat(folder: Path, processes: int, rng: random.Random) -> dict[str, Any]:
    """Release ``processes`` forks on one new database; what each did, and what the database holds."""
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "race.db"
    url = f"sqlite:///{db}"
    wanted = [rng.randint(1, 2) for _ in range(processes)]
    gate_r, gate_w = os.pipe()
    pids = []
    for index, n_trials in enumerate(wanted):
        pid = os.fork()
        if pid == 0:
            os.close(gate_w)
            _child(gate_r, url, n_trials, folder / f"child-{index}.json")
        pids.append(pid)
    os.close(gate_r)
    time.sleep(0.05)  # every child is blocked on the gate by now
    started = time.monotonic()
    os.close(gate_w)
    codes = _reap(pids, REPEAT_TIMEOUT_S)
    seconds = time.monotonic() - started
    children = []
    for index, pid in enumerate(pids):
        report = _read_json(folder / f"child-{index}.json")
        children.append({"trials": wanted[index], "rc": codes[pid], **report})
    return {"seconds": seconds, "children": children}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"ok": False, "error": "no report (the process died before writing it)"}
    return data if isinstance(data, dict) else {"ok": False, "error": "a malformed report"}


def warm_up(folder: Path) -> int:
    """Import and exercise everything a child needs, so that children start at once; threads left over."""
    folder.mkdir(parents=True, exist_ok=True)
    _open_and_run(f"sqlite:///{folder / 'warm.db'}", 1)
    return threading.active_count() - 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.reliability.race_driver")
    parser.add_argument("--dir", required=True, help="a folder of its own; each repeat gets a subfolder")
    parser.add_argument("--repeats", type=int, required=True)
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    folder = Path(args.dir)
    threads = warm_up(folder / "warm-up")
    print(json.dumps({"warm_up_threads": threads}), flush=True)
    rng = random.Random(args.seed)
    for repeat in range(args.repeats):
        result = one_repeat(folder / f"repeat-{repeat:03d}", args.processes, rng)
        print(json.dumps({"repeat": repeat, **result}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

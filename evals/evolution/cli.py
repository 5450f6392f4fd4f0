"""``python -m evals.evolution``: the arguments, the runs in order, the JSON and the markdown."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evals.evolution.report import render
from evals.evolution.runs import EXAMPLES, log, prepare, run_cli, sandbox_overhead
from evals.evolution.stats import read_study, summarize
from evals.report import report_arguments, run_and_report


@dataclass(frozen=True)
class Spec:
    """One run: the example folder, the cascade stage counted, whether it is the ``bo`` copy, its trial flag."""

    example: str
    stage: str | None
    bo: bool
    trials_flag: str
    label: str


RUNS = {
    "code-speedup": Spec("code-speedup", "tests", False, "trials_speedup", "evolve + local model"),
    "nas-code": Spec("nas-code", "builds", False, "trials_nas", "evolve + local model"),
    "nas-space-auto": Spec("nas-space", None, False, "trials_nas", "auto + local model (the job as is)"),
    "nas-space-bo": Spec("nas-space", None, True, "trials_nas", "bo, no model"),
}
SANDBOXED = ("code-speedup", "nas-code")


def _csv(text: str) -> list[str]:
    names = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown run(s) {', '.join(unknown)}; choose from {', '.join(RUNS)}")
    return names


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m evals.evolution",
        description="Code evolution and architecture search on the examples, with the real CLI and the local model.",
    )
    add = parser.add_argument
    add("--trials-speedup", type=int, default=8, help="trials of code-speedup (default 8)")
    add("--trials-nas", type=int, default=6, help="trials of nas-code and of each nas-space run (default 6)")
    add("--only", type=_csv, default=list(RUNS), help=f"comma list of runs (default all: {','.join(RUNS)})")
    add("--cap", type=float, default=540.0, help="seconds one run may take before it is stopped (default 540)")
    add("--repeats", type=int, default=10, help="repetitions of the sandbox overhead measurement (default 10)")
    report_arguments(parser, "the copies and databases")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    from evals.overhead import metadata

    started = time.monotonic()
    meta = metadata(argv)
    meta["command"] = shlex.join(["python", "-m", "evals.evolution", *argv])
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="tunesmith-evolution-"))
    root.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "meta": meta,
        "sizes": {"trials_speedup": args.trials_speedup, "trials_nas": args.trials_nas, "cap_s": args.cap},
        "sandbox": [],
        "runs": {},
    }
    try:
        for name in [n for n in SANDBOXED if n in args.only]:
            log(f"sandbox overhead on examples/{RUNS[name].example} ({args.repeats} repeats)")
            results["sandbox"].append(sandbox_overhead(EXAMPLES / RUNS[name].example, args.repeats))
        for name in args.only:
            spec = RUNS[name]
            trials = getattr(args, spec.trials_flag)
            folder = prepare(spec.example, root / name, bo=spec.bo)
            log(f"{name}: {spec.label}, {trials} trials, in {folder}")
            process = run_cli(folder, trials, args.cap, name)
            entry: dict[str, Any] = {"example": spec.example, "proposer": spec.label, "trials_asked": trials}
            entry["process"] = process
            try:
                study = read_study(folder / "bench.db")
                entry["summary"] = summarize(study, stage=spec.stage, wall_s=process["wall_s"])
            except (OSError, ValueError, sqlite3.Error) as exc:  # a run that left no study: reported, not fatal
                entry["error"] = f"{type(exc).__name__}: {exc}"
            results["runs"][name] = entry
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    meta["load_average"]["end"] = list(os.getloadavg())
    meta["seconds"] = time.monotonic() - started
    return results


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    return run_and_report(lambda: run(args, argv), render, summarize=args.summarize, out=args.out, json_out=args.json)

"""``python -m evals.reliability``: run the chosen scenarios, print the report, write it and the JSON.

A scenario that raises is a row ("harness error"), never the end of the run: the point of the report is to
say what broke, and a harness crash on a faulty tree would say nothing. Whatever happens, every process
carrying the run's mark is killed before the harness exits.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import shutil
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent.logs import set_verbosity
from evals.reliability import hostile, kill9, leaks, mcp, models, race
from evals.reliability.common import Context, Outcome, Row, error_row, kill_marked
from evals.reliability.report import render
from evals.report import report_arguments, run_and_report

SCENARIOS = ("kill9", "race", "models", "secrets", "hostile", "mcp")


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m evals.reliability",
        description="Fault injection: kill -9 and resume, racing processes, misbehaving models, planted secrets, "
        "hostile candidates, hostile MCP clients.",
    )
    add = parser.add_argument
    add("--scenario", default="all", help=f"all, or a comma list of {', '.join(SCENARIOS)} (default all)")
    add("--kills", type=int, default=32, help="kill9: SIGKILLs in all, shared by the set-ups (default 32)")
    add("--setups", default="1,2", help="kill9: comma list of WORKERS[:EXECUTOR] (default 1,2)")
    add("--child-life", type=float, default=900, help="kill9: seconds the objective's marked child sleeps (900)")
    add("--repeats", type=int, default=50, help="race: repeats of the API race (default 50)")
    add("--processes", type=int, default=8, help="race: processes per API repeat (default 8)")
    add("--cli-repeats", type=int, default=6, help="race: repeats of the CLI race (default 6)")
    add("--cli-runs", type=int, default=4, help="race: CLI runs per repeat (default 4)")
    add("--behaviours", default="all", help="models: all, or a comma list of behaviour names")
    add("--wall-time", type=float, default=10, help="models: each study's wall time in seconds (default 10)")
    add("--grace", type=float, default=10, help="models: seconds past the wall time a run may take (default 10)")
    add("--hard-limit", type=float, default=15, help="models: seconds past wall time + grace before a kill (15)")
    add("--seed", type=int, default=0, help="seed of the kill moments and of the racing processes (default 0)")
    report_arguments(parser, "every scenario's files")
    args = parser.parse_args(argv)
    args.scenario = list(SCENARIOS) if args.scenario == "all" else _csv(args.scenario)
    unknown = [s for s in args.scenario if s not in SCENARIOS]
    if unknown or not args.scenario:
        parser.error(f"--scenario takes all or a comma list of {', '.join(SCENARIOS)}")
    try:
        args.setups = [kill9.Setup.parse(s) for s in _csv(args.setups)]
        args.behaviours = models.select(None if args.behaviours == "all" else _csv(args.behaviours))
    except ValueError as exc:
        parser.error(str(exc))
    counts = (args.kills, args.repeats, args.processes, args.cli_repeats, args.cli_runs)
    if min(counts) < 0 or not args.setups or min(s.workers for s in args.setups) < 1 or args.processes < 1:
        parser.error("counts must not be negative; --setups and --processes need at least one")
    if not (args.wall_time > 0 and args.grace >= 0 and args.hard_limit >= 0 and args.child_life > 0):
        parser.error("--wall-time and --child-life must be positive, --grace and --hard-limit not negative")
    return args


def sizes(args: argparse.Namespace) -> str:
    """The sizes of this run in one line, for the report's header."""
    parts = {
        "kill9": f"kill9 {args.kills} kills over {', '.join(s.label for s in args.setups)}",
        "race": f"race {args.repeats} x {args.processes} processes, {args.cli_repeats} x {args.cli_runs} CLI runs",
        "models": f"models {len(args.behaviours)} behaviours, wall time {args.wall_time:g} s",
        "secrets": "secrets 1 study, 5 commands",
        "hostile": "hostile 24 programs with and without bubblewrap, then kill -9 + resume",
        "mcp": "mcp 24 hostile client calls",
    }
    return "; ".join(parts[name] for name in args.scenario) + f"; seed {args.seed}"


def _scenario(name: str, args: argparse.Namespace) -> Callable[[Context], tuple[list[Row], dict[str, Any]]]:
    return {
        "kill9": lambda ctx: kill9.run(ctx, args.kills, args.setups, args.child_life),
        "race": lambda ctx: race.run(ctx, args.repeats, args.processes, args.cli_repeats, args.cli_runs),
        "models": lambda ctx: models.run(ctx, args.behaviours, args.wall_time, args.grace, args.hard_limit),
        "secrets": leaks.run,
        "hostile": hostile.run,
        "mcp": mcp.run,
    }[name]


def run_one(name: str, ctx: Context, args: argparse.Namespace) -> Outcome:
    """One scenario; an exception becomes a broken "harness error" row, with the traceback in the details."""
    print(f"{name}: running", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        rows, details = _scenario(name, args)(ctx)
    except Exception as exc:
        rows, details = [error_row(name, exc)], {"error": traceback.format_exc()}
    finally:
        kill_marked(ctx.mark(name))  # the scenario's own clean-up ran unless it failed half-way
    seconds = time.monotonic() - started
    broken = sum(r.broken for r in rows)
    print(f"{name}: {seconds:.0f} s, {broken} broken case(s)", file=sys.stderr, flush=True)
    return Outcome(name, rows, details, seconds)


def run(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    from evals.overhead import metadata

    meta = metadata(argv)
    meta["command"] = shlex.join(["python", "-m", "evals.reliability", *argv])
    run_mark = f"rel-{uuid.uuid4().hex[:12]}"
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="tunesmith-reliability-"))
    root.mkdir(parents=True, exist_ok=True)
    ctx = Context(root, run_mark, args.seed)
    outcomes = []
    try:
        for name in args.scenario:
            outcomes.append(run_one(name, ctx, args))
    finally:
        kill_marked(run_mark)
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    meta["load_average"]["end"] = list(os.getloadavg())
    return {
        "meta": meta,
        "sizes": sizes(args),
        "rows": [row.to_json() for outcome in outcomes for row in outcome.rows],
        "scenarios": {o.name: {"seconds": o.seconds, "details": o.details} for o in outcomes},
    }


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    set_verbosity(logging.WARNING)  # the faults' own lines, not one per trial of every scenario
    return run_and_report(lambda: run(args, argv), render, summarize=args.summarize, out=args.out, json_out=args.json)

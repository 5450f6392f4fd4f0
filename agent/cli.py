"""The ``tunesmith`` command: run, status, best, storage upgrade.

Heavy modules (SQLAlchemy, rich, numpy, torch) are imported inside the commands, so ``tunesmith --help``
and ``--version`` answer at once.

Exit codes: 0 success, 1 runtime failure (e.g. no complete trial for ``best``), 2 bad input (job file,
flags, unknown study), 130 interrupted.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import sys
from typing import TYPE_CHECKING, Any, NoReturn

from agent import __version__

if TYPE_CHECKING:
    from rich.console import Console

    from agent.jobfile import Job
    from agent.study import Study

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunesmith",
        description="An optimizer agent: propose, evaluate, record, repeat.",
    )
    parser.add_argument("--version", action="version", version=f"tunesmith {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run (or resume) the study a job file describes")
    run.add_argument("job", help="path to a job file (TOML)")

    status = commands.add_parser("status", help="studies in a storage, or one study in detail")
    status.add_argument("name", nargs="?", help="a study name (all studies when left out)")
    status.add_argument("--storage", default=None, help="database URL (default: sqlite:///tunesmith.db)")
    status.add_argument("--json", action="store_true", help="print JSON instead of tables")

    best = commands.add_parser("best", help="the best trial of a study, as JSON")
    best.add_argument("name", help="the study name")
    best.add_argument("--storage", default=None, help="database URL (default: sqlite:///tunesmith.db)")

    storage = commands.add_parser("storage", help="manage a storage: upgrade its schema")
    storage_commands = storage.add_subparsers(dest="storage_command", required=True, metavar="ACTION")
    upgrade = storage_commands.add_parser(
        "upgrade", help="bring a database to this release's schema (SQLite files are copied first)"
    )
    upgrade.add_argument("url", help="database URL, e.g. sqlite:///tunesmith.db or postgresql://host/db")
    return parser


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a study name in Greek on an ASCII terminal is shown, not a crash
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    args = _parser().parse_args(argv)
    handler = {"run": _cmd_run, "status": _cmd_status, "best": _cmd_best, "storage": _cmd_storage}[args.command]
    from agent.storage import StorageError

    try:
        return handler(args)
    except StorageError as exc:  # a URL to fix (2), or a database that failed under us (1): one line, no traceback
        _fail(str(exc), _exit_code(exc))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `tunesmith status --json | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    from rich.markup import escape

    from agent.secrets import redact

    _console(stderr=True).print(f"[bold red]error:[/] {escape(redact(message))}", markup=True, soft_wrap=True)
    raise SystemExit(code)


def _exit_code(exc: Exception) -> int:
    """1 for an environment that failed (an unreachable or read-only database, a full disk), 2 for input the
    user must fix (a bad URL, an unknown study)."""
    from agent.storage import StorageUnavailable

    return EXIT_ERROR if isinstance(exc, StorageUnavailable) else EXIT_USAGE


def _open_study(name: str, storage: str | None) -> Study:
    from agent.storage import DEFAULT_STORAGE, StorageError
    from agent.study import load_study

    try:
        return load_study(name, storage or DEFAULT_STORAGE)
    except StorageError as exc:
        _fail(str(exc), _exit_code(exc))


# run ------------------------------------------------------------------------------------------------------
def _cmd_run(args: argparse.Namespace) -> int:
    import logging

    from rich.logging import RichHandler

    from agent.jobfile import JobFileError, load_job
    from agent.secrets import RedactingFilter

    handler = RichHandler(show_path=False)
    handler.addFilter(RedactingFilter())  # a warning quoting a server's reply must not print the key it echoed
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[handler])
    try:
        job = load_job(args.job)
    except JobFileError as exc:
        console = _console(stderr=True)
        console.print(f"[bold red]error:[/] {exc.path} cannot be run:", soft_wrap=True)
        for problem in exc.problems:
            console.print(f"  - {problem}", markup=False, soft_wrap=True)
        return EXIT_USAGE
    study = _study_for(job)
    # `kill` (SIGTERM) should stop a run as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    return _run_with_progress(job, study)


def _interrupt(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def _study_for(job: Job) -> Study:
    from agent.secrets import without_credentials
    from agent.storage import StorageError
    from agent.study import study_from_config

    console = _console()
    try:
        study = study_from_config(job.config, job.space, load_if_exists=True, objective=job.objective.identity)
    except (ValueError, StorageError) as exc:
        _fail(str(exc), _exit_code(exc))
    done = len(study.trials)
    if done:
        console.print(f"Resuming study [bold]{study.name}[/]: {done} trials so far.")
    for point in job.enqueue:
        study.enqueue(point, once=True)
    console.print(f"Storage: {without_credentials(study.storage.url)}", markup=False, soft_wrap=True)
    return study


def _run_with_progress(job: Job, study: Study) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from agent.budget import BudgetAccount
    from agent.trial import Trial

    budget = job.budget
    account = BudgetAccount(budget)
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("best {task.fields[best]}"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[remaining]}"),
        console=_console(),
        transient=False,
    )

    def best_text() -> str:
        try:
            return f"{study.best_value:.6g}"
        except ValueError:
            return "-"

    def remaining_text() -> str:
        left = account.remaining_s
        return "" if left is None else f"{left:.0f}s left"

    task = progress.add_task(
        study.name,
        total=budget.trials,
        completed=study.budgeted_trials,
        best=best_text(),
        remaining=remaining_text(),
    )

    def on_trial(_: Study, trial: Trial) -> None:
        progress.update(
            task,
            completed=study.budgeted_trials,
            best=best_text(),
            remaining=remaining_text(),
        )
        if trial.error:
            progress.console.print(f"trial {trial.number} failed: {trial.error}", markup=False, soft_wrap=True)

    interrupted = False
    with progress:
        try:
            summary = study.optimize(
                job.evaluator(),
                budget=budget,
                workers=job.config.workers,
                executor=job.config.executor,
                callbacks=[on_trial],
                requeue_interrupted=job.config.requeue_interrupted,
            )
            stopped: str = summary.stopped_because
        except KeyboardInterrupt:
            interrupted, stopped = True, "interrupted"
    _print_summary(study, stopped)
    return EXIT_INTERRUPTED if interrupted else 0


# status / best --------------------------------------------------------------------------------------------
def _cmd_status(args: argparse.Namespace) -> int:
    from agent.storage import DEFAULT_STORAGE, StorageError, open_storage
    from agent.study import Study
    from agent.summary import summarize

    if args.name:
        studies = [_open_study(args.name, args.storage)]
    else:
        try:
            storage = open_storage(args.storage or DEFAULT_STORAGE, create=False)
        except StorageError as exc:
            _fail(str(exc), _exit_code(exc))
        studies = [Study(storage, record) for record in storage.list_studies()]
    summaries = [summarize(s) for s in studies]
    if args.json:
        print(json.dumps(summaries[0] if args.name else summaries, indent=2))
        return 0
    if not summaries:
        _console().print("No studies yet. Start one with: tunesmith run JOB.toml")
        return 0
    if args.name:
        _print_summary(studies[0], None)
    else:
        _print_studies(summaries)
    return 0


def _cmd_best(args: argparse.Namespace) -> int:
    study = _open_study(args.name, args.storage)
    try:
        best = study.best_trial
    except ValueError as exc:
        _fail(str(exc), EXIT_ERROR)
    print(
        json.dumps(
            {
                "study": study.name,
                "number": best.number,
                "value": best.value,
                "params": dict(best.params),
                "metrics": dict(best.metrics),
                "proposer": best.proposer,
            }
        )
    )
    return 0


def _cmd_storage(args: argparse.Namespace) -> int:
    from agent.storage import SQLStorage, StorageError
    from agent.storage.migrate import HEAD

    try:
        SQLStorage(args.url, create=False).close()  # opening upgrades, after a backup copy of a SQLite file
    except StorageError as exc:
        _fail(str(exc), _exit_code(exc))
    print(f"{args.url} is at schema {HEAD}")
    return 0


# Tables ---------------------------------------------------------------------------------------------------
def _print_studies(summaries: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title="Studies")
    for column in ("name", "direction", "trials", "complete", "failed", "running", "best"):
        table.add_column(column, justify="right" if column not in ("name", "direction") else "left")
    for s in summaries:
        best = s["best"]["value"] if s["best"] else None
        table.add_row(
            s["name"],
            s["direction"],
            str(s["trials"]),
            str(s["states"]["complete"]),
            str(s["states"]["failed"]),
            str(s["states"]["running"]),
            "-" if best is None else f"{best:.6g}",
        )
    _console().print(table)


def _print_summary(study: Study, stopped: str | None) -> None:
    from rich.table import Table

    from agent.summary import summarize

    s = summarize(study)
    console = _console()
    states = ", ".join(f"{n} {state}" for state, n in s["states"].items() if n)
    header = f"[bold]{s['name']}[/] ({s['direction']}{', ' + s['metric'] if s['metric'] else ''}): "
    header += f"{s['trials']} trials ({states or 'none'})"
    if stopped:
        header += f"; stopped: {stopped}"
    console.print(header, soft_wrap=True)
    spend = s["spend"]
    if s["model"] or spend["calls"]:
        console.print(
            f"Model {s['model'] or '-'}: {spend['calls']} calls ({spend['failed_calls']} failed), "
            f"{spend['tokens']:,} tokens, ${spend['usd']:.4f}",
            markup=False,
            soft_wrap=True,
        )

    if s["best"]:
        best = Table(title=f"Best trial #{s['best']['number']}: {s['best']['value']:.6g}", show_header=True)
        best.add_column("parameter")
        best.add_column("value")
        for name, value in s["best"]["params"].items():
            best.add_row(name, _short(value))
        console.print(best)

    mix = Table(title="Proposers")
    mix.add_column("proposer")
    mix.add_column("trials", justify="right")
    mix.add_column("improvements", justify="right")
    for name, row in s["proposers"].items():
        mix.add_row(name, str(row["trials"]), str(row["improvements"]))
    console.print(mix)

    failed = [t for t in study.trials if t.error][-3:]
    for trial in failed:
        console.print(f"trial {trial.number} failed: {trial.error}", markup=False, soft_wrap=True)


def _short(value: object, limit: int = 60) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."


if __name__ == "__main__":
    sys.exit(main())

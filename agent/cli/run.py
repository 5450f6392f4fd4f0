"""``tunesmith run JOB``: check a job file, open (or resume) its study, run trials, and say what happens.

What a person watching sees: in a terminal, a progress bar with one line per finished trial above it; in a log
(nohup, Slurm, CI: no terminal) the same lines with the time, and no bar, since a bar redrawn in a file is
noise. Each line holds the trial's number, outcome (the value, or the failure's cause), proposer, seconds
and parameters. ``-v`` adds each model call; ``-q`` leaves the closing summary only. Waits that take a while
(starting a model, fitting BO) are announced by the library's INFO log, shown here.

Flags override the job file for one run: ``--trials N`` (the study's budget, N trials in all), ``--more N``
(N more than it holds now), ``--workers``, ``--storage``; ``--dry-run`` checks everything and writes nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import time
from typing import TYPE_CHECKING, Any, NoReturn

from agent.cli.common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    console,
    exit_code,
    fail,
    print_job_problems,
)
from agent.cli.targets import storage_url
from agent.cli.views import escape, print_summary

if TYPE_CHECKING:
    from rich.console import Console

    from agent.budget import Budget
    from agent.jobfile import Job
    from agent.study import Study
    from agent.trial import Trial


def register(commands: Any) -> None:
    run = commands.add_parser(
        "run",
        help="run (or resume) the study a job file describes",
        description="Run (or resume) the study a job file describes. Flags override the job file for this run.",
    )
    run.add_argument("job", help="path to a job file (TOML)")
    amount = run.add_mutually_exclusive_group()
    amount.add_argument(
        "--trials", type=_positive, metavar="N", help="the study's trial budget: N trials in all ([budget] trials)"
    )
    amount.add_argument("--more", type=_positive, metavar="N", help="run N trials more than the study holds now")
    run.add_argument("--workers", type=_positive, metavar="N", help="trials evaluated at once ([study] workers)")
    run.add_argument("--storage", metavar="URL", help="a database URL or file path ([study] storage)")
    run.add_argument("--dry-run", action="store_true", help="check the job and show what would run; write nothing")
    loudness = run.add_mutually_exclusive_group()
    loudness.add_argument("-v", "--verbose", action="store_true", help="also show each model call")
    loudness.add_argument("-q", "--quiet", action="store_true", help="show only the closing summary and errors")
    run.set_defaults(handler=run_command)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {value}")
    return value


def run_command(args: argparse.Namespace) -> int:
    from agent.jobfile import JobFileError, load_job

    out = console()
    show_logs(out, verbose=args.verbose, quiet=args.quiet)
    try:
        job = load_job(args.job, require_budget=args.trials is None and args.more is None)
    except JobFileError as exc:
        print_job_problems(exc, "run")
        return EXIT_USAGE
    job = _with_flags(job, args)
    if args.dry_run:
        _print_plan(job, args)
        return EXIT_OK
    study, new_points = open_job_study(job)
    budget = _run_budget(job, study, args, new_points)
    interrupt_on_sigterm()
    return _run(job, study, budget, quiet=args.quiet)


def interrupt_on_sigterm() -> None:
    """`kill` stops a run as cleanly as Ctrl-C: running trials marked interrupted, their processes ended."""
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def _with_flags(job: Job, args: argparse.Namespace) -> Job:
    update: dict[str, Any] = {}
    if args.workers is not None:
        update["workers"] = args.workers
    if args.storage is not None:
        update["storage"] = storage_url(args.storage)
    return dataclasses.replace(job, config=job.config.model_copy(update=update)) if update else job


def open_job_study(job: Job) -> tuple[Study, int]:
    """Open (or create) the job's study and enqueue its ``[[enqueue]]`` points, saying which study and storage;
    returns the study and how many of those points are new to it."""
    from agent.interact.session import open_job_study as open_study
    from agent.secrets import without_credentials
    from agent.storage import StorageError

    out = console()
    try:
        study, new_points = open_study(job)
    except (ValueError, StorageError) as exc:
        fail(str(exc), exit_code(exc))
    if done := len(study.trials):
        out.print(f"Resuming study [bold]{escape(study.name)}[/]: {done} trials so far.", soft_wrap=True)
    out.print(f"Storage: {without_credentials(study.storage.url)}", markup=False, soft_wrap=True)
    return study, new_points


def _run_budget(job: Job, study: Study, args: argparse.Namespace, new_points: int) -> Budget:
    """The job's budget with the flags applied, raised so that every point waiting in the queue is evaluated:
    a point listed in ``[[enqueue]]`` after the budget was spent runs on the next run instead of being ignored."""
    from agent.budget import Budget

    budget = job.config.budget.to_budget() or Budget()
    done = study.budgeted_trials
    trials = args.trials if args.trials is not None else budget.trials
    if args.more is not None:
        trials = done + args.more
    waiting = study.queued
    if trials is not None and waiting and done + waiting > trials:
        console().print(
            f"{waiting} enqueued point{'s' if waiting > 1 else ''} waiting ({new_points} new in the job file): "
            f"running {done + waiting - trials} trial(s) beyond the budget of {trials} to evaluate them.",
            soft_wrap=True,
        )
        trials = done + waiting
    return dataclasses.replace(budget, trials=trials)


def _run(job: Job, study: Study, budget: Budget, quiet: bool) -> int:
    from agent.errors import RepeatedFailure

    out = console()
    interrupted = False
    stopped = "interrupted"
    failure: RepeatedFailure | None = None
    with _Watch(study, budget, out, quiet) as watch:
        try:
            summary = study.optimize(
                job.evaluator(),
                budget=budget,
                workers=job.config.workers,
                executor=job.config.executor,
                callbacks=[watch.on_trial],
                requeue_interrupted=job.config.requeue_interrupted,
            )
            stopped = str(summary.stopped_because)
        except KeyboardInterrupt:
            interrupted = True
        except RepeatedFailure as exc:
            failure, stopped = exc, "repeated failure"
    print_summary(study, stopped)
    if failure is not None:
        fail(f"{failure}", EXIT_ERROR)
    return EXIT_INTERRUPTED if interrupted else EXIT_OK


class _Watch:
    """What a person sees while trials run: a line per finished trial, and a bar when there is a terminal."""

    def __init__(self, study: Study, budget: Budget, out: Console, quiet: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from agent.budget import BudgetAccount

        self.study = study
        self.out = out
        self.quiet = quiet
        self.account = BudgetAccount(budget)
        self.progress = (
            Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("best {task.fields[best]}"),
                TimeElapsedColumn(),
                TextColumn("{task.fields[remaining]}"),
                console=out,
                transient=False,
            )
            if out.is_terminal
            else None
        )
        if self.progress is not None:
            self.task = self.progress.add_task(study.name, total=budget.trials, **self._fields())

    def _fields(self) -> dict[str, Any]:
        from agent.display import number

        try:
            best = number(self.study.best_value)
        except ValueError:
            best = "-"
        left = self.account.remaining_s
        return {
            "completed": self.study.budgeted_trials,
            "best": best,
            "remaining": "" if left is None else f"{left:.0f}s left",
        }

    def on_trial(self, study: Study, trial: Trial) -> None:
        from agent.display import trial_line

        if self.progress is not None:
            self.progress.update(self.task, **self._fields())
        if self.quiet:
            return
        if self.progress is not None:
            self.out.print(trial_line(trial), markup=False, soft_wrap=True)
        else:  # a log file: each line stamped, and written out now, not when a buffer fills
            print(f"{time.strftime('%H:%M:%S')} {trial_line(trial)}", flush=True)

    def __enter__(self) -> _Watch:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()


def show_logs(out: Console, verbose: bool, quiet: bool) -> None:
    """Warnings always; what the run waits for (INFO) unless ``-q``; each model call (DEBUG) with ``-v``.

    The library's own line per finished trial is left out: the progress view prints a richer one.
    """
    from agent.logs import TRIAL_LOGGER
    from agent.secrets import RedactingFilter

    handler: logging.Handler
    if out.is_terminal:
        from rich.logging import RichHandler

        handler = RichHandler(console=console(stderr=True), show_path=False)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    handler.addFilter(RedactingFilter())  # a warning quoting a server's reply must not print the key it echoed
    handler.addFilter(lambda record: not record.name.startswith(TRIAL_LOGGER))
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[handler])
    logging.getLogger("agent").setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)


def _print_plan(job: Job, args: argparse.Namespace) -> None:
    """What ``run`` would do, after the whole job check passed; nothing is opened for writing."""
    from agent.display import short_params
    from agent.secrets import without_credentials

    c = job.config
    budget = c.budget
    limits = [
        f"{budget.trials} trials" if args.trials is None and budget.trials else "",
        f"{args.trials} trials" if args.trials else "",
        f"{args.more} more trials" if args.more else "",
        f"wall time {budget.wall_time:g} s" if budget.wall_time else "",
        f"{budget.tokens} tokens" if budget.tokens else "",
        f"${budget.usd:g}" if budget.usd else "",
        f"{budget.model_calls} model calls" if budget.model_calls else "",
    ]
    model = f" with model {c.search.model}" if c.search.model is not None else ""
    rows = [
        ("study", f"{c.name} ({c.direction}{', ' + c.metric if c.metric else ''})"),
        ("storage", without_credentials(c.storage)),
        ("space", ", ".join(f"{name}: {param.describe()}" for name, param in job.space.items())),
        ("objective", job.objective.identity),
        ("proposer", f"{c.search.proposer}{model}"),
        ("budget", ", ".join(limit for limit in limits if limit)),
        ("workers", f"{c.workers} ({c.executor or ('threads' if c.workers > 1 else 'inline')})"),
    ]
    rows += [("enqueue", short_params(point)) for point in job.enqueue]
    out = console()
    out.print(f"{job.path} is ready to run:", markup=False, soft_wrap=True)
    for key, text in rows:
        out.print(f"  {key:<10} {text}", markup=False, soft_wrap=True)
    out.print("Dry run: nothing was started or written.")

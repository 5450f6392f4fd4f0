"""The commands that read a study and change nothing: ``status``, ``best``, ``trials``, ``show``.

Each takes what a user has at hand (a job file, a storage URL or path, or a study name with ``--storage``;
see :mod:`agent.cli.targets`), never creates a database, and has a ``--json`` form for scripts.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.cli.common import EXIT_ERROR, EXIT_OK, console, fail
from agent.cli.targets import add_target_arguments, open_storage_of, open_study, resolve
from agent.cli.views import (
    call_record,
    print_json,
    print_studies,
    print_summary,
    print_trial,
    print_trials,
    producing_call,
    trial_record,
)
from agent.display import number

if TYPE_CHECKING:
    from agent.study import Study
    from agent.trial import Trial


def register(commands: Any) -> None:
    status = commands.add_parser("status", help="the studies of a storage, or one study in detail")
    add_target_arguments(status, optional="all studies")
    _json_flag(status)
    status.set_defaults(handler=status_command)

    best = commands.add_parser("best", help="the best trial of a study, as JSON")
    add_target_arguments(best)
    best.add_argument(
        "--write-to",
        metavar="PATH",
        help="write the best program (the study's Code parameter) to PATH; into its marked region when PATH "
        "(or the job's file) has one",
    )
    best.set_defaults(handler=best_command)

    trials = commands.add_parser("trials", help="a study's trials, one row each")
    add_target_arguments(trials)
    trials.add_argument("--failed", action="store_true", help="only the failed trials, with their causes")
    _json_flag(trials)
    trials.set_defaults(handler=trials_command)

    show = commands.add_parser(
        "show", help="one trial in full: parameters, metrics, error and output, rationale, the model's prompt and reply"
    )
    add_target_arguments(show)
    show.add_argument("number", type=int, metavar="NUMBER", help="the trial's number")
    _json_flag(show)
    show.set_defaults(handler=show_command)


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")


def status_command(args: argparse.Namespace) -> int:
    from agent.study import Study
    from agent.summary import summarize

    target = resolve(args.target, args.storage)
    if target.name is not None:
        study = open_study(target)
        if args.json:
            print_json(summarize(study))
        else:
            print_summary(study, None)
        return EXIT_OK
    storage = open_storage_of(target)
    summaries = [summarize(Study(storage, record)) for record in storage.list_studies()]
    if args.json:
        print_json(summaries)
    elif not summaries:
        console().print("No studies yet. Start one with: tunesmith run JOB.toml")
    else:
        print_studies(summaries)
    return EXIT_OK


def best_command(args: argparse.Namespace) -> int:
    target = resolve(args.target, args.storage)
    study = open_study(target)
    try:
        best = study.best_trial
    except ValueError as exc:
        fail(str(exc), EXIT_ERROR)
    if args.write_to:
        _write_program(study, best, Path(args.write_to), target.folder)
        return EXIT_OK
    record = trial_record(best)
    print_json(
        {
            "study": study.name,
            **{key: record[key] for key in ("number", "value", "params", "metrics", "proposer", "rationale")},
        }
    )
    return EXIT_OK


def trials_command(args: argparse.Namespace) -> int:
    study = open_study(resolve(args.target, args.storage))
    chosen = [t for t in study.trials if t.error and not t.interrupted] if args.failed else study.trials
    if args.json:
        print_json([trial_record(t) for t in chosen])
    elif not chosen:
        console().print(f"{study.name}: no {'failed ' if args.failed else ''}trials.", markup=False)
    else:
        print_trials(study, chosen)
    return EXIT_OK


def show_command(args: argparse.Namespace) -> int:
    study = open_study(resolve(args.target, args.storage))
    trial = next((t for t in study.trials if t.number == args.number), None)
    if trial is None:
        count = len(study.trials)
        known = f"its trials are numbered 0 to {count - 1}" if count else "it has no trials yet"
        fail(f"study {study.name!r} has no trial {args.number} ({known})")
    call = producing_call(study, trial)
    if args.json:
        print_json({**trial_record(trial), "model_call": None if call is None else call_record(call)})
    else:
        print_trial(study, trial, call)
    return EXIT_OK


def _write_program(study: Study, best: Trial, path: Path, job_folder: Path | None) -> None:
    """Write the best trial's program to ``path``. A program that is a marked region of a file goes into that
    region: of ``path`` when it already has the markers (the user's own file, updated in place), else of a copy
    of the job's file; a whole-file program is written as it is."""
    from agent.evolution.regions import RegionError, splice_region
    from agent.space import Code

    code = [(name, param) for name, param in study.space.items() if isinstance(param, Code)]
    if len(code) != 1:
        fail(f"--write-to writes a study's one Code parameter; study {study.name!r} has {len(code) or 'none'}")
    name, param = code[0]
    program = str(best.params[name])
    content = program
    if param.region is not None and param.file is not None:
        around = path if path.is_file() else (job_folder / param.file if job_folder is not None else None)
        if around is None or not around.is_file():
            fail(
                f"the best {name} is the region {param.region!r} of {param.file}: give the job file as TARGET (its "
                f"folder holds {param.file}) or a PATH that has the region's markers"
            )
        try:
            content = splice_region(around.read_text(), param.region, program, file=str(around))
        except RegionError as exc:
            fail(str(exc))
    try:
        path.write_text(content)
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror or exc}", EXIT_ERROR)
    console().print(
        f"Wrote the best {name} (trial {best.number}, {study.metric or 'value'} {number(best.value)}) to {path}",
        markup=False,
        soft_wrap=True,
    )

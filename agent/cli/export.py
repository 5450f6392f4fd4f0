"""``tunesmith export TARGET --optuna URL``: a study's trials written into an Optuna storage, for
optuna-dashboard and Optuna's plots (see :mod:`agent.export`).

TARGET is read as the reading commands read it (a job file, a database, a study name with ``--storage``; see
:mod:`agent.cli.targets`); the study is only read.
"""

from __future__ import annotations

import argparse
from typing import Any

from agent.cli.common import EXIT_ERROR, EXIT_OK, EXIT_USAGE, console, fail
from agent.cli.targets import add_target_arguments, open_study, resolve, storage_url


def register(commands: Any) -> None:
    export = commands.add_parser(
        "export", help="write a study's trials into an Optuna storage, for optuna-dashboard and Optuna's plots"
    )
    add_target_arguments(export)
    export.add_argument(
        "--optuna",
        required=True,
        metavar="URL",
        help="the Optuna storage: a database URL or path, e.g. optuna.db (created when missing)",
    )
    export.add_argument("--name", default=None, metavar="NAME", help="the Optuna study's name (default: the study's)")
    export.add_argument(
        "--replace", action="store_true", help="delete an Optuna study of that name first (exporting again)"
    )
    export.set_defaults(handler=export_command)


def export_command(args: argparse.Namespace) -> int:
    from agent.export import ExportError, ExportRefused, export_to_optuna
    from agent.secrets import redact

    study = open_study(resolve(args.target, args.storage))
    url = storage_url(args.optuna)
    try:
        report = export_to_optuna(study, url, name=args.name, replace=args.replace)
    except ExportRefused as exc:
        fail(str(exc), EXIT_USAGE)
    except ExportError as exc:
        fail(str(exc), EXIT_ERROR)
    notes = []
    if report.running_skipped:
        notes.append(f"{_count(report.running_skipped, 'running trial')} skipped")
    if report.values_set_aside:
        values = _count(report.values_set_aside, "parameter value")
        notes.append(f"{values} outside the current space kept as param:<name> user attributes")
    shown = redact(url)  # a password in a postgresql:// URL
    line = f'exported {_count(report.exported, "trial")} of "{study.name}" to {shown} as "{report.name}"'
    console().print(
        line + (f" ({'; '.join(notes)})" if notes else "") + f"; view with: optuna-dashboard {shown}",
        markup=False,
        soft_wrap=True,
    )
    return EXIT_OK


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"

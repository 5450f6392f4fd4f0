"""``tunesmith report``: a study's pictures as one self-contained HTML file, and as PNG files with ``--png``.

The report is read-only, like ``status``: it takes the same TARGET (a job file, a storage, a study name; see
:mod:`agent.cli.targets`) and never creates a database. matplotlib, which draws it, is an optional extra: its
absence is one line naming the command that installs it, said before the study is read.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.cli.common import EXIT_ERROR, EXIT_OK, console, fail
from agent.cli.targets import add_target_arguments, open_study, resolve

if TYPE_CHECKING:
    from agent.study import Study

#: Where the page goes without ``-o``: the current folder, a name that is the same for every study.
DEFAULT_OUTPUT = "report.html"


def register(commands: Any) -> None:
    report = commands.add_parser(
        "report",
        help="a study's plots as one HTML file that works offline (and as PNG files with --png)",
        description="Write a study's report: best so far, parallel coordinates, parameter slices, rank "
        "correlations, which proposer found each improvement, model cost over time, and the best texts with "
        "their diff against the first trial. One HTML file, no script, nothing loaded from the network.",
    )
    add_target_arguments(report)
    report.add_argument(
        "-o",
        "--output",
        default=DEFAULT_OUTPUT,
        metavar="PATH",
        help=f"the HTML file to write; its folder is made (default: {DEFAULT_OUTPUT} here)",
    )
    report.add_argument(
        "--png", metavar="DIR", help="also write each plot as DIR/<plot>.png (the folder is made), for terminals and CI"
    )
    report.set_defaults(handler=report_command)


def report_command(args: argparse.Namespace) -> int:
    from agent.report import ReportUnavailable, require_matplotlib

    try:
        require_matplotlib()
    except ReportUnavailable as exc:
        fail(str(exc), EXIT_ERROR)
    study = open_study(resolve(args.target, args.storage))
    try:
        said = write_report(study, Path(args.output), Path(args.png) if args.png else None)
    except OSError as exc:
        fail(f"cannot write {exc.filename or args.output}: {exc.strerror or exc}", EXIT_ERROR)
    console().print(said, markup=False, soft_wrap=True)
    return EXIT_OK


def write_report(study: Study, output: Path, png: Path | None = None) -> str:
    """Write ``study``'s report to ``output`` (its folder made), and its PNGs into ``png``; returns what was written,
    in a line or two (what ``report``, chat's ``/report`` and the MCP tool say).

    Raises:
        ReportUnavailable: matplotlib is not installed.
        OSError: a file could not be written.
    """
    from agent.report import Report

    report = Report.of(study)
    page = report.html()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(page, encoding="utf-8")
    pngs = report.write_pngs(png) if png is not None else []
    empty = [d.plot.title.lower() for d in report.plots if d.figure is None]
    drawn = len(report.plots) - len(empty)
    line = f"Wrote {output} ({len(page.encode()) // 1024} KiB, {drawn} plots) for study {study.name}"
    said = line + (f"; nothing to plot yet: {', '.join(empty)}" if empty else "")
    if png is not None:
        said += f"\nWrote {len(pngs)} PNG files to {png}: {', '.join(p.name for p in pngs) or 'none'}"
    return said

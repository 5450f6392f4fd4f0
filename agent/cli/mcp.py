"""``tunesmith mcp [JOB ...]``: serve studies to a chat assistant over the Model Context Protocol (stdio).

The assistant starts this command itself (its MCP configuration names it) and talks to it on stdin and
stdout; see :mod:`agent.interact.mcp_server` for the tools. The job files given are opened at start, so their
studies can run trials; any other study is found by name in ``--storage``. What a client may name is what this
command line allows (:mod:`agent.interact.boundary`): these job files and those under ``--allow-jobs``, and
paths inside ``--root``. The ``mcp`` package is an optional
extra: its absence is one line naming the command that installs it, said before anything is opened.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path
from typing import Any

from agent.cli.common import EXIT_ERROR, EXIT_OK, EXIT_USAGE, exit_code, fail, print_job_problems

#: What installs the MCP SDK, as the error says it.
PIP_MCP = 'pip install "tunesmith[mcp]"'


def register(commands: Any) -> None:
    mcp = commands.add_parser(
        "mcp",
        help="serve studies to a chat assistant over the Model Context Protocol (stdio)",
        description="Serve studies over MCP on stdin and stdout, for a chat assistant that starts this command: "
        "tools to list, create and load studies, ask and tell, run trials with a job's objective, see status, "
        "best and trials, steer the search (narrow, fix, free, note...) and write the report.",
    )
    mcp.add_argument(
        "jobs",
        nargs="*",
        metavar="JOB",
        help="job files whose studies can run trials (opened at start); a client can load only these, and those "
        "under --allow-jobs, since run_trials runs a job's command on this host",
    )
    mcp.add_argument(
        "--allow-jobs",
        action="append",
        default=[],
        metavar="DIR",
        help="let a client load (and run) any job file under DIR as well (repeatable)",
    )
    mcp.add_argument(
        "--root",
        default=".",
        metavar="DIR",
        help="the folder every path and SQLite storage a client names must be in; a report is written only there "
        "(default: this folder)",
    )
    mcp.add_argument(
        "--storage",
        default="tunesmith.db",
        metavar="URL",
        help="database URL or path where a study named without a job is found (default: tunesmith.db here)",
    )
    mcp.set_defaults(handler=mcp_command)


def mcp_command(args: argparse.Namespace) -> int:
    try:
        importlib.import_module("mcp")
    except ImportError as exc:
        fail(f"tunesmith mcp needs the mcp package ({exc}); install it with: {PIP_MCP}", EXIT_ERROR)
    from agent.cli.targets import storage_url
    from agent.errors import TunesmithError
    from agent.interact.boundary import Boundary
    from agent.interact.mcp_server import serve
    from agent.jobfile import JobFileError

    for folder in (args.root, *args.allow_jobs):
        if not Path(folder).is_dir():
            fail(f"{folder}: no such folder (--root and --allow-jobs take a folder)")
    _log_to_stderr()
    try:
        serve(Boundary.of(args.root, storage_url(args.storage), args.jobs, args.allow_jobs), args.jobs)
    except JobFileError as exc:
        print_job_problems(exc, "opened")
        return EXIT_USAGE
    except TunesmithError as exc:  # a job's study that cannot be opened (another space under that name...)
        fail(str(exc), exit_code(exc))
    return EXIT_OK


def _log_to_stderr() -> None:
    """Trial lines and warnings on stderr, where an assistant's MCP log shows them; stdout is the protocol's."""
    from agent.secrets import RedactingFilter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    handler.addFilter(RedactingFilter())  # a warning quoting a server's reply must not print the key it echoed
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    logging.getLogger("agent").setLevel(logging.INFO)

"""The ``tunesmith`` command: ``run`` a job; ``status``, ``best``, ``trials``, ``show`` to look at studies;
``report`` a study as an HTML page (and PNGs); ``export`` one into an Optuna storage; ``chat`` with a study
(look, steer, run trials, ask its model); ``mcp``, studies served to a chat assistant over the Model Context
Protocol; ``storage upgrade``.

Each command lives in its own module and registers its own arguments; heavy modules (SQLAlchemy, rich,
numpy, torch) are imported inside the commands, so ``tunesmith --help`` and ``--version`` answer at once.

Exit codes: 0 success, 1 the environment or the objective failed (an unreachable database, no complete
trial for ``best``, every trial failing the same way), 2 bad input (job file, flags, unknown study),
130 interrupted.
"""

from __future__ import annotations

import argparse
import io
import os
import sys

from agent import __version__
from agent.cli import chat, export, mcp, reading, report, run
from agent.cli.common import EXIT_INTERRUPTED, EXIT_OK, exit_code, fail


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunesmith",
        description="An optimizer agent: propose, evaluate, record, repeat.",
    )
    parser.add_argument("--version", action="version", version=f"tunesmith {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run.register(commands)
    reading.register(commands)
    report.register(commands)
    export.register(commands)
    chat.register(commands)
    mcp.register(commands)

    storage = commands.add_parser("storage", help="manage a storage: upgrade its schema")
    storage_commands = storage.add_subparsers(dest="storage_command", required=True, metavar="ACTION")
    upgrade = storage_commands.add_parser(
        "upgrade", help="bring a database to this release's schema (SQLite files are copied first)"
    )
    upgrade.add_argument("url", help="database URL or path, e.g. sqlite:///tunesmith.db or postgresql://host/db")
    upgrade.set_defaults(handler=_upgrade_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a study name in Greek on an ASCII terminal is shown, not a crash
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    args = _parser().parse_args(argv)
    from agent.storage import StorageError

    try:
        code: int = args.handler(args)
        return code
    except StorageError as exc:  # a URL to fix (2), or a database that failed under us (1): one line, no traceback
        fail(str(exc), exit_code(exc))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `tunesmith trials --json | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _upgrade_command(args: argparse.Namespace) -> int:
    from agent.cli.targets import storage_url
    from agent.storage import SQLStorage
    from agent.storage.migrate import HEAD

    url = storage_url(args.url)
    SQLStorage(url, create=False).close()  # opening upgrades, after a backup copy of a SQLite file
    print(f"{url} is at schema {HEAD}")
    return EXIT_OK

"""What every command shares: exit codes, the consoles, and one-line errors.

Rich and the storage layer are imported inside the functions, so ``tunesmith --help`` answers at once.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from rich.console import Console

    from agent.jobfile import JobFileError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


#: The console the views print to while :func:`captured` holds one, instead of the terminal.
_capture: ContextVar[Console | None] = ContextVar("tunesmith_capture", default=None)


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    capture = _capture.get()
    if capture is not None and not stderr:
        return capture
    return Console(stderr=stderr, highlight=False)


@contextmanager
def captured(width: int = 110) -> Iterator[list[str]]:
    """What the views print inside the block, kept as plain text (the list's one item, set on leaving).

    Why: a chat's model and an MCP client read the same summary, tables and trial view a person reads, so
    they are rendered once, by the views, and captured here rather than written twice.
    """
    from rich.console import Console

    capture = Console(record=True, width=width, highlight=False, color_system=None, file=io.StringIO())
    token = _capture.set(capture)
    text: list[str] = []
    try:
        yield text
    finally:
        _capture.reset(token)
        text.append(capture.export_text(styles=False).rstrip() + "\n")


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print ``error: message`` (secrets scrubbed, rich markup in it shown as typed) and exit with ``code``."""
    from rich.markup import escape

    from agent.secrets import redact

    console(stderr=True).print(f"[bold red]error:[/] {escape(redact(message))}", markup=True, soft_wrap=True)
    raise SystemExit(code)


def print_job_problems(exc: JobFileError, doing: str) -> None:
    """``error: JOB cannot be run:`` and one line per faulty key, each naming the key and the fix."""
    err = console(stderr=True)
    err.print(f"[bold red]error:[/] {exc.path} cannot be {doing}:", soft_wrap=True)
    for problem in exc.problems:
        err.print(f"  - {problem}", markup=False, soft_wrap=True)


def exit_code(exc: Exception) -> int:
    """1 for an environment that failed (an unreachable or read-only database, a full disk), 2 for input the
    user must fix (a bad URL, an unknown study)."""
    from agent.storage import StorageUnavailable

    return EXIT_ERROR if isinstance(exc, StorageUnavailable) else EXIT_USAGE

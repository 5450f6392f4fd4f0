"""What every command shares: exit codes, the consoles, and one-line errors.

Rich and the storage layer are imported inside the functions, so ``tunesmith --help`` answers at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from rich.console import Console

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print ``error: message`` (secrets scrubbed, rich markup in it shown as typed) and exit with ``code``."""
    from rich.markup import escape

    from agent.secrets import redact

    console(stderr=True).print(f"[bold red]error:[/] {escape(redact(message))}", markup=True, soft_wrap=True)
    raise SystemExit(code)


def exit_code(exc: Exception) -> int:
    """1 for an environment that failed (an unreachable or read-only database, a full disk), 2 for input the
    user must fix (a bad URL, an unknown study)."""
    from agent.storage import StorageUnavailable

    return EXIT_ERROR if isinstance(exc, StorageUnavailable) else EXIT_USAGE

"""One root for every error tunesmith raises on purpose.

``except TunesmithError`` catches anything the library reports, and each subclass also inherits the
builtin it resembles, so code written against ``ValueError`` or ``RuntimeError`` keeps working: a bad
space is a ``ValueError``, a storage that cannot be opened a ``RuntimeError``.

The concrete errors live beside the code that raises them (``SpaceError`` in :mod:`agent.space`,
``StorageError`` in :mod:`agent.storage`, ...); this module holds the root and the errors shared by
several packages.
"""

from __future__ import annotations


class TunesmithError(Exception):
    """The root of every error tunesmith raises on purpose."""


class ConfigError(TunesmithError, ValueError):
    """A setting that cannot be used (an unknown proposer, a malformed model spec, a bad option).

    ``field`` names the setting (``"proposer.kind"``, ``"model"``) so that a job file, the CLI and the
    Python API can all point at what to fix.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        super().__init__(message if field is None else f"{field}: {message}")


class BudgetExhausted(TunesmithError, RuntimeError):
    """Nothing more may be spent: the study's trial, token or money budget is used up.

    ``reason`` is the :class:`agent.loop.StopReason` value a run reports for it.
    """

    def __init__(self, message: str, reason: str) -> None:
        self.reason = reason
        super().__init__(message)


class RepeatedFailure(TunesmithError, RuntimeError):
    """The first trials of a run all failed for the same reason: the objective (or its environment) is
    broken, and more trials would only fail the same way.

    ``count`` is how many failed in a row, ``cause`` the one-line reason they share
    (:func:`agent.display.failure_cause`).
    """

    def __init__(self, message: str, count: int, cause: str) -> None:
        self.count = count
        self.cause = cause
        super().__init__(message)

"""Budgets: how much a study may spend, and the running account of what it has spent.

``trials`` counts the study's trials across every run and worker (a resumed study continues towards the
same total; trials interrupted by a dead process do not count). ``wall_time`` bounds one call of
``optimize`` (one ``tunesmith run``), like a job's time limit.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|d|h|m|s)")
_UNIT_SECONDS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(value: str | float | int) -> float:
    """Seconds from a number (seconds) or a string such as ``"90s"``, ``"30m"``, ``"1h30m"``, ``"2d"``.

    Raises:
        ValueError: with the accepted forms, when ``value`` is none of them or not positive.
    """
    if isinstance(value, bool):
        raise ValueError(f'expected a duration such as 90, "90s", "30m" or "1h30m", got {value!r}')
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        parts = _DURATION_PART.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            try:
                seconds = float(text)
            except ValueError:
                raise ValueError(f'expected a duration such as 90, "90s", "30m" or "1h30m", got {value!r}') from None
        else:
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    else:
        raise ValueError(f'expected a duration such as 90, "90s", "30m" or "1h30m", got {value!r}')
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"a duration must be positive, got {value!r}")
    return seconds


@dataclass(frozen=True)
class Budget:
    """Limits on a study. Leave a field None for no limit.

    Args:
        trials: total trials in the study (all runs and workers together).
        wall_time: seconds, or a string such as ``"30m"``, for one ``optimize`` call.
    """

    trials: int | None = None
    wall_time: float | str | None = None

    def __post_init__(self) -> None:
        if self.trials is not None and (
            not isinstance(self.trials, int) or isinstance(self.trials, bool) or self.trials < 1
        ):
            raise ValueError(f"Budget.trials must be a positive integer, got {self.trials!r}")
        if self.wall_time is not None:
            object.__setattr__(self, "wall_time", parse_duration(self.wall_time))

    @property
    def wall_time_s(self) -> float | None:
        return None if self.wall_time is None else float(self.wall_time)


class BudgetAccount:
    """What one ``optimize`` call has spent against a :class:`Budget`."""

    def __init__(self, budget: Budget | None) -> None:
        self.budget = budget or Budget()
        self._started = time.monotonic()

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self._started

    @property
    def remaining_s(self) -> float | None:
        limit = self.budget.wall_time_s
        return None if limit is None else max(0.0, limit - self.elapsed_s)

    def exhausted(self) -> str | None:
        """Why no new trial may start (trial counts are checked by storage, atomically), or None."""
        remaining = self.remaining_s
        if remaining is not None and remaining <= 0:
            return "wall time"
        return None

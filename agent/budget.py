"""Budgets: how much a study may spend, and the running account of what it has spent.

``trials`` counts the study's trials across every run and worker (a resumed study continues towards the
same total; trials interrupted by a dead process do not count). ``tokens``, ``usd`` and ``model_calls``
count the study's model calls (the proposer's, and a task model's scoring prompts), also across runs.
``wall_time`` bounds one call of ``optimize`` (one ``tunesmith run``), like a job's time limit. A trial
already running when a limit is reached finishes.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.storage import Spend

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
        tokens: total model tokens (prompt + completion) for the study.
        usd: total model spend in US dollars for the study (prices: :mod:`agent.llm.pricing`).
        model_calls: total model calls for the study, failed ones included: the natural unit when a task
            model scores each prompt on a dev set (one call per example).
    """

    trials: int | None = None
    wall_time: float | str | None = None
    tokens: int | None = None
    usd: float | None = None
    model_calls: int | None = None

    def __post_init__(self) -> None:
        if self.trials is not None and (
            not isinstance(self.trials, int) or isinstance(self.trials, bool) or self.trials < 1
        ):
            raise ValueError(f"Budget.trials must be a positive integer, got {self.trials!r}")
        if self.wall_time is not None:
            object.__setattr__(self, "wall_time", parse_duration(self.wall_time))
        if self.tokens is not None and (
            not isinstance(self.tokens, int) or isinstance(self.tokens, bool) or self.tokens < 1
        ):
            raise ValueError(f"Budget.tokens must be a positive integer, got {self.tokens!r}")
        if self.model_calls is not None and (
            not isinstance(self.model_calls, int) or isinstance(self.model_calls, bool) or self.model_calls < 1
        ):
            raise ValueError(f"Budget.model_calls must be a positive integer, got {self.model_calls!r}")
        if self.usd is not None and (
            isinstance(self.usd, bool) or not isinstance(self.usd, int | float) or not self.usd > 0
        ):
            raise ValueError(f"Budget.usd must be a positive number, got {self.usd!r}")

    @property
    def limits_spend(self) -> bool:
        """Whether model calls must be checked against the study's spend before they are made."""
        return self.tokens is not None or self.usd is not None or self.model_calls is not None

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
    def deadline(self) -> float | None:
        """When the wall time runs out (a ``time.monotonic()`` value), or None without a wall time."""
        limit = self.budget.wall_time_s
        return None if limit is None else self._started + limit

    @property
    def remaining_s(self) -> float | None:
        deadline = self.deadline
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    @property
    def counts_spend(self) -> bool:
        """Whether :meth:`exhausted` needs the study's model spend."""
        return self.budget.limits_spend

    def exhausted(self, spend: Spend | None = None) -> str | None:
        """Why no new trial may start (trial counts are checked by storage, atomically), or None."""
        remaining = self.remaining_s
        if remaining is not None and remaining <= 0:
            return "wall time"
        if spend is not None and self.budget.tokens is not None and spend.tokens >= self.budget.tokens:
            return "token budget"
        if spend is not None and self.budget.usd is not None and spend.usd >= self.budget.usd:
            return "money budget"
        if spend is not None and self.budget.model_calls is not None and spend.calls >= self.budget.model_calls:
            return "call budget"
        return None

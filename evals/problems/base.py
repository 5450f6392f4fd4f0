"""What every benchmark problem is: a space, an objective to minimize and, where known, its optimum."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from agent.space import ParamValue, Space

Objective = Callable[[Mapping[str, ParamValue]], float]


@dataclass(frozen=True)
class Problem:
    """One benchmark problem.

    Attributes:
        name: unique across suites; used on the command line and in reports.
        suite: "synthetic" or "ml"; scores are averaged per suite.
        space: the tunesmith search space every optimizer searches (Optuna through a translation).
        objective: maps a candidate to a float to MINIMIZE, whatever the natural direction of the task,
            so that scoring needs no direction. It may raise; the run records a failed trial.
        optimum: the known global minimum, or None where it is unknown (the ML tasks), in which case
            scoring uses the best value any optimizer found in the same run.
    """

    name: str
    suite: str
    space: Space
    objective: Objective
    optimum: float | None

    @property
    def dims(self) -> int:
        """Number of parameters (not unit-cube dimensions: a categorical counts once)."""
        return len(self.space)

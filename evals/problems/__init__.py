"""The benchmark problems, by suite. Problems are looked up by name so that workers rebuild them locally."""

from __future__ import annotations

from collections.abc import Sequence

from evals.problems import ml, synthetic
from evals.problems.base import Objective, Problem

SUITES: dict[str, list[Problem]] = {"synthetic": synthetic.PROBLEMS, "ml": ml.PROBLEMS}
PROBLEMS: dict[str, Problem] = {p.name: p for suite in SUITES.values() for p in suite}


def select(suite: str, names: Sequence[str] = ()) -> list[Problem]:
    """The problems of ``suite`` ("synthetic", "ml" or "all"), narrowed to ``names`` when given.

    Raises:
        ValueError: an unknown suite or problem name; the message lists the valid ones.
    """
    if suite != "all" and suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; expected all, {', '.join(SUITES)}")
    pool = [p for name, problems in SUITES.items() if suite in ("all", name) for p in problems]
    if not names:
        return pool
    by_name = {p.name: p for p in pool}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(
            f"unknown problem(s) {', '.join(unknown)} in suite {suite!r}; choose from {', '.join(by_name)}"
        )
    return [by_name[n] for n in names]


__all__ = ["PROBLEMS", "SUITES", "Objective", "Problem", "select"]

"""The pure counting behind every check: no processes, no files, so each definition is tested on its own.

Definitions (the report's notes refer to them):

* A trial is *finished* when it is no longer running and was not interrupted: it produced a result (complete)
  or a failure of the objective (failed). An interrupted trial (its process died) produced nothing; a *late*
  trial (marked interrupted, result arrived later) is finished, because its evaluation did happen.
* A *point* is a trial's parameters; two trials evaluate the same point when every parameter is equal (floats
  to 12 significant digits, far below what any proposer repeats by chance on a continuous space).
* A *duplicate* is a second (third, ...) finished evaluation of one point. Re-running the point of an
  interrupted trial is not a duplicate - the interrupted one is not finished - but evaluating a point twice
  to completion is, whoever proposed it.
* A completed trial is *lost* when it was complete in one snapshot of the database and is not complete, with
  the same point and value, in a later one.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

RUNNING = "running"
COMPLETE = "complete"
_TEMP_FOLDER = re.compile(r"^tunesmith-trial-(\d+)-")


@dataclass(frozen=True)
class TrialRow:
    """The fields of a stored trial that the checks read."""

    number: int
    state: str
    params: Mapping[str, Any]
    value: float | None = None
    interrupted: bool = False
    late: bool = False
    error: str | None = None
    started_at: float | None = None

    @property
    def finished(self) -> bool:
        return self.state != RUNNING and (not self.interrupted or self.late)

    @classmethod
    def from_db(cls, row: Mapping[str, Any]) -> TrialRow:
        """From a ``trials`` row; schemas without the ``interrupted`` column said so in ``error``."""
        error = row.get("error")
        interrupted = bool(row["interrupted"]) if "interrupted" in row else error == "interrupted"
        return cls(
            number=int(row["number"]),
            state=str(row["state"]),
            params=json.loads(row["params"]),
            value=row.get("value"),
            interrupted=interrupted,
            late=bool(row.get("late") or False),
            error=error,
            started_at=row.get("started_at"),
        )


def _canonical(value: Any) -> Any:
    return f"{value:.12g}" if isinstance(value, float) else value


def point_key(params: Mapping[str, Any]) -> str:
    """A point as text: equal for the same parameters, floats compared to 12 significant digits."""
    return json.dumps({k: _canonical(v) for k, v in params.items()}, sort_keys=True)


def evaluations(trials: Iterable[TrialRow]) -> Counter[str]:
    """Finished evaluations per point."""
    return Counter(point_key(t.params) for t in trials if t.finished)


def duplicate_points(trials: Iterable[TrialRow]) -> dict[str, int]:
    """Points evaluated to the end more than once, with how many times."""
    return {key: n for key, n in evaluations(trials).items() if n > 1}


def matches(params: Mapping[str, Any], point: Mapping[str, Any]) -> bool:
    """Whether a trial's ``params`` hold ``point`` (an enqueued point may leave defaulted parameters out)."""
    return all(k in params and _canonical(params[k]) == _canonical(v) for k, v in point.items())


def enqueued_counts(trials: Sequence[TrialRow], points: Sequence[Mapping[str, Any]]) -> list[int]:
    """Finished evaluations of each enqueued point, in order; exactly 1 each is what the job asks."""
    return [sum(1 for t in trials if t.finished and matches(t.params, p)) for p in points]


def completed(trials: Iterable[TrialRow]) -> dict[int, tuple[str, float | None]]:
    """Complete trials by number: their point and value."""
    return {t.number: (point_key(t.params), t.value) for t in trials if t.state == COMPLETE}


def lost_between(before: Iterable[TrialRow], after: Iterable[TrialRow]) -> list[int]:
    """Numbers of trials complete ``before`` that are not complete, with the same point and value, ``after``."""
    kept = completed(after)
    return sorted(n for n, record in completed(before).items() if kept.get(n) != record)


def trial_of_temp_folder(name: str) -> int | None:
    """The trial number in a ``tunesmith-trial-<n>-xxxx`` folder name (None for any other name)."""
    match = _TEMP_FOLDER.match(name)
    return int(match.group(1)) if match else None


def attribute(trials: Iterable[int | None], in_flight: Sequence[Iterable[int]]) -> tuple[list[int], int]:
    """Count leftovers (stray processes, folders) by the kill that left them.

    A leftover of trial ``n`` belongs to the first kill at which ``n`` was running; the others (no trial
    number, or a trial that was never running at a kill) are returned as one count: they come from trials
    that ended normally.
    """
    running = [set(numbers) for numbers in in_flight]
    per_kill = [0] * len(running)
    other = 0
    for number in trials:
        index = next((i for i, numbers in enumerate(running) if number in numbers), None)
        if index is None:
            other += 1
        else:
            per_kill[index] += 1
    return per_kill, other


def occurrences(data: bytes, needles: Mapping[str, str]) -> dict[str, int]:
    """How many times each named value occurs in ``data`` (as UTF-8 bytes); values absent count 0."""
    return {name: data.count(value.encode()) for name, value in needles.items() if value}


def add_counts(total: dict[str, int], more: Mapping[str, int]) -> dict[str, int]:
    """``total`` plus ``more``, key by key (a new dict)."""
    out = dict(total)
    for key, n in more.items():
        out[key] = out.get(key, 0) + n
    return out


def tally(messages: Iterable[str], limit: int = 3) -> str:
    """The most frequent messages with their counts, e.g. ``"database is locked x3; timeout x1"``."""
    counts = Counter(m for m in messages if m)
    parts = [f"{text} x{n}" if n > 1 else text for text, n in counts.most_common(limit)]
    if len(counts) > limit:
        parts.append(f"{len(counts) - limit} other kind(s)")
    return "; ".join(parts)


def integrity_problems(trials: Sequence[TrialRow], studies: int, run: int, attempted: int) -> list[str]:
    """What is wrong with a database that processes shared: ``run`` trials were run by the processes that
    succeeded, ``attempted`` by all of them (one that failed half-way may have stored some of its own).

    Expected: one study (if anything ran), between ``run`` and ``attempted`` trials, numbered 0..n-1, and all
    complete when every process succeeded.
    """
    problems = []
    if (run or trials) and studies != 1:
        problems.append(f"{studies} studies")
    if not run <= len(trials) <= attempted:
        problems.append(f"{len(trials)} trials stored, {run} run" + (f" of {attempted}" if attempted != run else ""))
    if [t.number for t in trials] != list(range(len(trials))):
        problems.append("trial numbers are not 0..n-1")
    if run == attempted and any(t.state != COMPLETE for t in trials):
        problems.append(f"{sum(t.state != COMPLETE for t in trials)} trials not complete")
    return problems

"""What every evaluator returns, and how an objective's output becomes a value and metrics.

Objectives may return a number or a dict of numbers; commands print a JSON object. Either way the output
is checked here, in one place, so a NaN, an infinity, a string or an ambiguous dict fails the trial with
a reason the user (and the model) can act on, instead of poisoning the history.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from agent.space import ParamValue
from agent.trial import Trial

if TYPE_CHECKING:
    from agent.loop import RunSummary
    from agent.study import Study

#: How much of an evaluation's stderr/stdout is kept as feedback.
FEEDBACK_CHARS = 2000


class ObjectiveOutputError(ValueError):
    """The objective's output is not a usable score; the message says what was wrong."""


@dataclass(frozen=True)
class Evaluation:
    """The raw result of evaluating one candidate.

    Attributes:
        output: what the objective returned (a number or a mapping of metric names to numbers), or None
            when it failed.
        error: why it failed, one line.
        feedback: what it printed or the traceback tail, for the user and the model.
        pruned: the evaluation stopped early because the candidate was not going to win (a prompt that lost
            to the incumbent on a minibatch); ``output`` holds what was measured, recorded as metrics
            without a value, so a partial score never competes with complete ones.
        artifacts: texts kept with the trial by name (each example's output and score), stored before the
            trial is recorded finished, so whoever sees the finished trial can read them.
    """

    output: float | Mapping[str, Any] | None
    error: str | None = None
    feedback: str | None = None
    pruned: bool = False
    artifacts: Mapping[str, str] = field(default_factory=dict)


class Evaluator(Protocol):
    """Anything that can score a candidate. Failures are returned, never raised."""

    def evaluate(self, params: Mapping[str, ParamValue], trial: Trial) -> Evaluation: ...


@runtime_checkable
class StudyEvaluator(Evaluator, Protocol):
    """An evaluator that works with the study it scores for: its lifecycle hooks are called by ``optimize``.

    Why hooks: some evaluators need the study itself — a task model whose calls must go through the study's
    budget and records, the incumbent to compare a candidate with — and some have work to do once a run is
    over (scoring a held-out split once). A plain ``evaluate(params, trial)`` cannot reach either.
    """

    def start_run(self, study: Study) -> None:
        """Called before the run's first trial, with the run's budget already in force.

        Raises:
            ConfigError: the study cannot be evaluated this way (its direction or metric does not fit).
        """
        ...

    def end_run(self, study: Study, summary: RunSummary) -> None:
        """Called after a run that was not interrupted, outside the run's budget."""
        ...


def tail(text: str, limit: int = FEEDBACK_CHARS) -> str:
    """The last ``limit`` characters of ``text``, marked when cut."""
    return text if len(text) <= limit else "..." + text[-limit:]


def _finite_number(name: str, raw: object) -> float:
    if isinstance(raw, bool) or not isinstance(raw, numbers.Real):
        raise ObjectiveOutputError(f"{name} is {type(raw).__name__} {raw!r}, not a number")
    value = float(raw)
    if not math.isfinite(value):
        raise ObjectiveOutputError(f"{name} is {value}, not a finite number")
    return value


def numeric_metrics(output: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of an output, by name: what is kept as metrics (labels and flags are not)."""
    return {
        str(k): float(v)
        for k, v in output.items()
        if isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))
    }


def read_outcome(output: object, metric: str | None) -> tuple[float, dict[str, float]]:
    """Split an objective's output into the target value and all numeric metrics.

    Args:
        output: a number, or a mapping of metric names to values.
        metric: the target metric's name; may be None when the output is a number or a one-entry mapping.

    Raises:
        ObjectiveOutputError: the output is not a finite number, or the target is missing or ambiguous.
    """
    if output is None:
        raise ObjectiveOutputError(
            "the objective returned None; return a number or a dict of metrics (a missing return statement?)"
        )
    if not isinstance(output, Mapping):
        value = _finite_number("the objective's result", output)
        return value, ({metric: value} if metric else {})
    metrics = numeric_metrics(output)
    if not output:
        raise ObjectiveOutputError('the objective returned an empty dict; return a number or e.g. {"loss": 0.1}')
    if metric is None:
        if len(output) != 1:
            raise ObjectiveOutputError(
                f"the objective returned several metrics ({', '.join(map(str, output))}); "
                "set the study's metric to the one to optimize"
            )
        metric = str(next(iter(output)))
    if metric not in output:
        raise ObjectiveOutputError(
            f"the objective's result has no {metric!r} (it has: {', '.join(map(str, output)) or 'nothing'})"
        )
    return _finite_number(f"metric {metric!r}", output[metric]), metrics

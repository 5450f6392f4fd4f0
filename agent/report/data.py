"""What a report is drawn from, read from the study once, and the facts several of its parts share.

Every figure and table of one report must show the same trials: a study still running gains trials between
two reads, so the trials and model calls are read once into a :class:`StudyData` and everything else is
computed from it. Nothing here imports matplotlib: the page and the tests of the numbers need none.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.trial import Trial, TrialState

if TYPE_CHECKING:
    from agent.proposers.base import Direction
    from agent.space import Space
    from agent.storage import LLMCallRecord
    from agent.study import Study

#: Purposes of the calls a task model makes while candidates are scored (tools.prompt_eval): the cost of
#: measuring, shown apart from the optimizer's cost of proposing (propose, repair, evolve...).
TASK_PURPOSES = frozenset({"evaluate", "test"})

#: Colours of the proposers the project ships, the same in every report; others get the spare ones in turn.
_PROPOSER_COLOURS = {
    "enqueued": "#7f7f7f",
    "random": "#bcbd22",
    "bo": "#1f77b4",
    "llm": "#d62728",
    "prompt": "#9467bd",
    "evolve": "#2ca02c",
    "auto": "#ff7f0e",
}
_SPARE_COLOURS = ("#8c564b", "#e377c2", "#17becf", "#393b79", "#637939", "#843c39")


@dataclass(frozen=True)
class StudyData:
    """A study's space and settings, its trials (by number) and its model calls (oldest first)."""

    name: str
    space: Space
    direction: Direction
    metric: str | None
    trials: Sequence[Trial]
    calls: Sequence[LLMCallRecord]

    @classmethod
    def of(cls, study: Study) -> StudyData:
        return cls(study.name, study.space, study.direction, study.metric, study.trials, study.llm_calls)

    @property
    def value_label(self) -> str:
        """What the value axis is called: the study's metric, else "value"."""
        return self.metric or "value"

    def scored(self) -> list[Trial]:
        """The complete trials with a finite value, by number: the only ones a value can be drawn for."""
        return [
            t for t in self.trials if t.state is TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)
        ]

    def improvements(self) -> list[Trial]:
        """The scored trials that beat every lower-numbered one: the steps of the best-so-far curve.

        Counted in trial-number order, the axis the curve is drawn on; the proposers table counts in finishing
        order (:meth:`StudyView.improvements`, what the ``auto`` bandit rewards). With one worker both orders are
        the same; with several, a trial overtaken while it ran may count in one and not the other.
        """
        sign = 1.0 if self.direction == "maximize" else -1.0
        best: float | None = None
        steps = []
        for trial in self.scored():
            assert trial.value is not None
            if best is None or sign * trial.value > sign * best:
                best = trial.value
                steps.append(trial)
        return steps

    def best(self) -> Trial | None:
        """The best scored trial (the first of equals), or None."""
        steps = self.improvements()
        return steps[-1] if steps else None


def proposer_colours(names: Iterable[str]) -> dict[str, str]:
    """A colour for each proposer name: fixed for the shipped proposers, the spare ones in name order for others,
    so that one proposer has one colour in every figure and table of a report."""
    unknown = sorted({name for name in names if name not in _PROPOSER_COLOURS})
    spare = {name: _SPARE_COLOURS[i % len(_SPARE_COLOURS)] for i, name in enumerate(unknown)}
    return {**_PROPOSER_COLOURS, **spare}


def is_task_call(call: LLMCallRecord) -> bool:
    """Whether a task model made ``call`` scoring a candidate, rather than the optimizer proposing one."""
    return call.purpose in TASK_PURPOSES


def log_scaled(values: Sequence[float]) -> bool:
    """Whether values are better read on a log axis: all positive and spanning more than three decades
    (a loss falling from 10 to 0.001); a log axis would hide everything else."""
    return bool(values) and min(values) > 0 and max(values) / min(values) > 1e3

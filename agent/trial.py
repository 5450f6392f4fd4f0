"""Trials and proposals: the records that flow around the loop.

A :class:`Proposal` is what a proposer hands to the study (a candidate and who made it, and why); a
:class:`Trial` is that candidate once the study has numbered it, stored it and, later, scored it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: reading a trial (the CLI's tables) must not import numpy and pydantic
    from agent.space import ParamValue

#: The error shown on a trial whose process died (or was stopped) while it was running.
INTERRUPTED = "interrupted"
#: What starts a line of a trial's feedback that says what the sandbox could not enforce for it.
SANDBOX_NOTE = "[sandbox] "


class TrialState(enum.StrEnum):
    """Where a trial is in its life. Only ``running`` trials change state."""

    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"
    PRUNED = "pruned"

    @property
    def is_finished(self) -> bool:
        return self is not TrialState.RUNNING


@dataclass(frozen=True)
class Proposal:
    """A candidate and its provenance.

    Attributes:
        params: the candidate, valid for the study's space.
        proposer: who made it: ``"random"``, ``"bo"``, ``"llm"``, ``"enqueued"``, ...
        rationale: the proposer's one-line reason, shown in ``status`` and to the model later.
        llm_call_id: the stored model call the candidate came from, if any.
        parents: numbers of the trials this candidate was derived from (an edited program's parent).
        artifacts: texts stored with the trial once it is reserved, by name (an edited program, its diff).
    """

    params: Mapping[str, ParamValue]
    proposer: str
    rationale: str | None = None
    llm_call_id: int | None = None
    parents: tuple[int, ...] = ()
    artifacts: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Trial:
    """One evaluation of one candidate, as stored.

    Attributes:
        number: 0, 1, 2, ... in the order trials were started; unique within a study.
        params: the candidate.
        state: running, complete, failed or pruned.
        value: the target metric (complete trials only).
        metrics: every numeric metric the objective reported, the target included.
        proposer, rationale: where the candidate came from.
        error: why the trial failed.
        interrupted: the trial's process died or was stopped before it finished: it produced no result
            and does not count against the trial budget.
        late: the trial was marked interrupted (its process looked dead) and its result arrived afterwards;
            the result is kept, and the trial counts like any other.
        feedback: what the evaluation printed (a stderr tail), shown to the model.
        started_at, finished_at: wall-clock times (UTC).
        llm_call_id: the model call that proposed it, if any.
        parents: the trials it was derived from (lineage).
        intermediate: ``(step, value)`` pairs the objective reported while running, by step.
        user_attrs: JSON values the user attached to it.
        artifacts: name -> content digest of the texts and files stored with it (see ``Storage.get_artifact``).
    """

    number: int
    params: Mapping[str, ParamValue]
    state: TrialState
    proposer: str
    started_at: datetime
    value: float | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    rationale: str | None = None
    error: str | None = None
    interrupted: bool = False
    late: bool = False
    feedback: str | None = None
    finished_at: datetime | None = None
    llm_call_id: int | None = None
    parents: tuple[int, ...] = ()
    intermediate: tuple[tuple[int, float], ...] = ()
    user_attrs: Mapping[str, Any] = field(default_factory=dict)
    artifacts: Mapping[str, str] = field(default_factory=dict)

    @property
    def duration_s(self) -> float | None:
        """Seconds the evaluation took, or None while running."""
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

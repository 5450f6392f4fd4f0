"""A study in numbers: counts by state, best trial, what each proposer contributed, what the model cost (and
how much of it a task model spent scoring candidates), held-out scores, and the steering in force.

Shared by ``tunesmith status``, ``tunesmith run``'s closing table and ``--json`` output, so the three
never disagree.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from agent.proposers.base import StudyView
from agent.steering import event_record
from agent.study import Study
from agent.trial import TrialState


def summarize(study: Study) -> dict[str, Any]:
    """A JSON-ready summary of ``study``."""
    trials = study.trials
    states = Counter(t.state.value for t in trials)
    proposers = Counter(t.proposer for t in trials)
    view = StudyView(study.space, study.direction, trials)  # one read of the trials serves every figure
    improved = view.improvements()
    incumbent = view.incumbent()
    best = None
    if incumbent is not None:
        best = {
            "number": incumbent.number,
            "value": incumbent.value,
            "params": dict(incumbent.params),
            "metrics": dict(incumbent.metrics),
            "proposer": incumbent.proposer,
        }
    spend = study.spend()
    task_calls = sum(int(t.metrics.get("task_calls", 0)) for t in trials)
    return {
        "name": study.name,
        "direction": study.direction,
        "metric": study.metric,
        "proposer": study.proposer_kind,
        "model": study.model,
        "spend": {
            "calls": spend.calls,
            "failed_calls": spend.failed_calls,
            "prompt_tokens": spend.prompt_tokens,
            "completion_tokens": spend.completion_tokens,
            "tokens": spend.tokens,
            "usd": round(spend.usd, 6),
        },
        "task_model": (
            {"calls": task_calls, "tokens": sum(int(t.metrics.get("task_tokens", 0)) for t in trials)}
            if task_calls
            else None
        ),
        "held_out": [
            {"trial": t.number, "metric": key.removeprefix("test_"), "score": value}
            for t in trials
            for key, value in t.user_attrs.items()
            if key.startswith("test_") and isinstance(value, int | float)
        ],
        "trials": len(trials),
        "states": {s.value: states.get(s.value, 0) for s in TrialState},
        "best": best,
        "proposers": {
            name: {"trials": n, "improvements": improved.get(name, (0, 0))[0]} for name, n in proposers.items()
        },
        "events": [event_record(e) for e in study.events if e.active],
    }

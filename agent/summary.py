"""A study in numbers: counts by state, best trial, and what each proposer contributed.

Shared by ``tunesmith status``, ``tunesmith run``'s closing table and ``--json`` output, so the three
never disagree.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from agent.study import Study
from agent.trial import Trial, TrialState


def improvements_by_proposer(trials: list[Trial], direction: str) -> Counter[str]:
    """How many times each proposer's trial beat the incumbent of its time (in order of finishing)."""
    best: float | None = None
    counts: Counter[str] = Counter()
    finished = [t for t in trials if t.state is TrialState.COMPLETE and t.value is not None]
    for trial in sorted(finished, key=lambda t: t.finished_at or t.started_at):
        assert trial.value is not None
        if best is None or (trial.value > best if direction == "maximize" else trial.value < best):
            best = trial.value
            counts[trial.proposer] += 1
    return counts


def summarize(study: Study) -> dict[str, Any]:
    """A JSON-ready summary of ``study``."""
    trials = study.trials
    states = Counter(t.state.value for t in trials)
    proposers = Counter(t.proposer for t in trials)
    improved = improvements_by_proposer(trials, study.direction)
    best = None
    try:
        bt = study.best_trial
        best = {
            "number": bt.number,
            "value": bt.value,
            "params": dict(bt.params),
            "metrics": dict(bt.metrics),
        }
    except ValueError:
        pass
    spend = study.spend()
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
        "trials": len(trials),
        "states": {s.value: states.get(s.value, 0) for s in TrialState},
        "best": best,
        "proposers": {name: {"trials": n, "improvements": improved.get(name, 0)} for name, n in proposers.items()},
    }

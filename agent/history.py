"""The model's view of the history: which trials to show, in which order, within a token budget.

Following OPRO, trials are listed worst to best so the best sits last, right above the request, where a
model attends most. What is kept: the best ``top_k`` (the region worth refining), the ``recent`` latest
(what the search did lately), and a few failures with their error tails (what to avoid, and why). When
the text is over budget, the three shrink in turn and long Text/Code values are cut harder, so even a
study of thousands of trials renders within ``max_tokens``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from agent.llm.client import estimate_tokens
from agent.proposers.base import StudyView
from agent.space import ParamValue
from agent.trial import Trial, TrialState


def _value_text(value: ParamValue, limit: int) -> str:
    text = json.dumps(value) if not isinstance(value, float) else f"{value:.6g}"
    return text if len(text) <= limit else text[: limit - 3] + '..."'


def format_params(params: Mapping[str, ParamValue], limit: int = 200) -> str:
    """``lr=0.001, depth=3, opt="adam"`` with long values cut to ``limit`` characters."""
    return ", ".join(f"{name}={_value_text(value, limit)}" for name, value in params.items())


def _line(trial: Trial, limit: int) -> str:
    if trial.state is TrialState.COMPLETE:
        return f"#{trial.number}: {format_params(trial.params, limit)} -> {trial.value:.6g}"
    reason = (trial.error or "failed").strip().splitlines()[-1][:limit]
    feedback = (trial.feedback or "").strip()[-limit:]
    tail = f" | output: {feedback!r}" if feedback else ""
    return f"#{trial.number}: {format_params(trial.params, limit)} -> FAILED ({reason}){tail}"


def select_trials(view: StudyView, top_k: int, recent: int, failures: int) -> list[Trial]:
    """The trials to show, ordered failures first, then complete ones worst to best."""
    complete = view.completed
    worst_first = sorted(complete, key=lambda t: t.value or 0.0, reverse=view.direction == "minimize")
    kept = {t.number: t for t in worst_first[-top_k:]} if top_k else {}
    for trial in sorted(complete, key=lambda t: t.number)[-recent:] if recent else []:
        kept.setdefault(trial.number, trial)
    failed = [t for t in view.trials if t.state is TrialState.FAILED][-failures:] if failures else []
    ordered = [t for t in worst_first if t.number in kept]
    return failed + ordered


def render_history(
    view: StudyView,
    max_tokens: int = 1500,
    top_k: int = 20,
    recent: int = 5,
    failures: int = 3,
    value_chars: int = 300,
) -> str:
    """The history as text, best trial last, within ``max_tokens`` (estimated)."""
    total = len(view.trials)
    if not total:
        return "No trials yet."
    while True:
        shown = select_trials(view, top_k, recent, failures)
        header = (
            f"{total} trials so far ({len(view.completed)} complete); showing {len(shown)}: "
            "failures first, then complete trials from worst to best (the best is last)."
        )
        lines = [header, *(_line(t, value_chars) for t in shown)]
        text = "\n".join(lines)
        if estimate_tokens(text) <= max_tokens:
            return text
        if value_chars > 40:
            value_chars //= 2
        elif failures or recent > 1:
            failures, recent = max(0, failures - 1), max(1, recent - 1)
        elif top_k > 1:
            top_k //= 2
        else:  # one trial that is still too long: keep what fits, best last
            return text[-max_tokens * 4 :]

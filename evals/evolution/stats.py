"""What the report says about one study, as pure functions of its stored trials and model calls.

Definitions:

* An ``evolve`` call *applied* when its ``error`` is empty: the reply's edit applied and gave a new program.
  A rejected call is *did not apply* (its SEARCH text was not found, or no edit was read), *already tried*
  (the program equals one evaluated before, after whitespace and comments), or *other* (no reply: a timeout,
  a server error; or a reply that could not be read at all).
* *Model seconds per proposal*: the latency of all ``evolve`` calls over the trials after the first (trial 0
  is the program as its file holds it and needs no call). Proposals are prefetched while a trial runs, so this
  time overlaps evaluation; *wall seconds per trial* is the run's own.
* *Evaluation seconds*: a trial's ``finished_at - started_at`` (every stage, in its sandbox); *stage seconds*:
  the ``<stage>_seconds`` metric the cascade records for trials that passed that stage.
* The *baseline* is trial 0; the *best* is the best complete trial in the study's direction.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

APPLIED, NOT_APPLIED, ALREADY_TRIED, OTHER = "applied", "did not apply", "already tried", "other"
REASONS = (NOT_APPLIED, ALREADY_TRIED, OTHER)
#: Distinct rejection texts kept as examples per reason.
EXAMPLES = 3
EXAMPLE_CHARS = 160


@dataclass(frozen=True)
class Call:
    """A stored model call: what it was for, how long it took, why it failed (None: it served)."""

    purpose: str
    latency_s: float
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class TrialRecord:
    """The fields of a stored trial the report reads."""

    number: int
    state: str
    value: float | None
    proposer: str
    started_at: float
    finished_at: float | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    llm_call_id: int | None = None
    interrupted: bool = False

    @property
    def seconds(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.started_at


@dataclass(frozen=True)
class Study:
    """One study as stored: its direction, trials (by number) and model calls (oldest first)."""

    name: str
    direction: str
    trials: list[TrialRecord]
    calls: list[Call]


def read_study(db: Path) -> Study:
    """The one study in a SQLite file, read with sqlite3 in read-only mode (reading never changes the file)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as conn:
        conn.row_factory = sqlite3.Row
        study = conn.execute("SELECT id, name, direction FROM studies ORDER BY id").fetchone()
        if study is None:
            raise ValueError(f"{db} holds no study")
        rows = conn.execute("SELECT * FROM trials WHERE study_id = ? ORDER BY number", (study["id"],)).fetchall()
        calls = conn.execute("SELECT * FROM llm_calls WHERE study_id = ? ORDER BY id", (study["id"],)).fetchall()
    trials = [
        TrialRecord(
            number=row["number"],
            state=row["state"],
            value=row["value"],
            proposer=row["proposer"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            metrics=json.loads(row["metrics"] or "{}"),
            params=json.loads(row["params"] or "{}"),
            error=row["error"],
            llm_call_id=row["llm_call_id"],
            interrupted=bool(row["interrupted"]),
        )
        for row in rows
    ]
    stored = [
        Call(c["purpose"], c["latency_s"] or 0.0, c["error"], c["prompt_tokens"] or 0, c["completion_tokens"] or 0)
        for c in calls
    ]
    return Study(study["name"], study["direction"], trials, stored)


def edit_outcome(error: str | None) -> str:
    """How an ``evolve`` call ended, from its stored error (see the module docstring)."""
    if error is None:
        return APPLIED
    if error.startswith("the edit did not apply"):
        return NOT_APPLIED
    if "already tried" in error:
        return ALREADY_TRIED
    return OTHER


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _div(num: float, den: float) -> float | None:
    return num / den if den else None


def edits(calls: Iterable[Call], purpose: str = "evolve") -> dict[str, Any]:
    """The share of a study's ``evolve`` calls that applied, the rejections by reason with a few examples, and
    the calls' latency and tokens."""
    chosen = [c for c in calls if c.purpose == purpose]
    outcomes = Counter(edit_outcome(c.error) for c in chosen)
    examples: dict[str, list[str]] = {reason: [] for reason in REASONS}
    for call in chosen:
        reason = edit_outcome(call.error)
        text = " ".join((call.error or "").split())[:EXAMPLE_CHARS]
        if reason != APPLIED and text not in examples[reason] and len(examples[reason]) < EXAMPLES:
            examples[reason].append(text)
    latency = [c.latency_s for c in chosen]
    return {
        "calls": len(chosen),
        "applied": outcomes[APPLIED],
        "applied_share": _div(outcomes[APPLIED], len(chosen)),
        "rejected": {reason: outcomes[reason] for reason in REASONS},
        "examples": examples,
        "latency_s_total": sum(latency),
        "latency_s_median": _median(latency),
        "latency_s_mean": _mean(latency),
        "latency_s_max": max(latency) if latency else None,
        "completion_tokens_median": _median([c.completion_tokens for c in chosen]),
        "prompt_tokens_median": _median([c.prompt_tokens for c in chosen]),
    }


def _better(direction: str) -> Any:
    return max if direction == "maximize" else min


def best_trial(study: Study) -> TrialRecord | None:
    complete = [t for t in study.trials if t.state == "complete" and t.value is not None]
    if not complete:
        return None
    return _better(study.direction)(complete, key=lambda t: (t.value, -t.number))


def _shown_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters for the JSON: numbers and short strings as they are, a program as its length."""
    return {k: (f"<{len(v)} chars>" if isinstance(v, str) and len(v) > 40 else v) for k, v in params.items()}


def summarize(study: Study, *, stage: str | None = None, wall_s: float | None = None) -> dict[str, Any]:
    """Everything the report shows about one study (see the module docstring for the definitions).

    ``stage`` names the cascade stage whose failures and times are counted; ``wall_s`` is the run's wall time
    as the harness measured it (process start to exit, the model server's start-up included).
    """
    trials = [t for t in study.trials if not t.interrupted]
    finished = [t for t in trials if t.finished_at is not None]
    failed = [t for t in trials if t.state == "failed"]
    at_stage = [t for t in failed if stage is not None and (t.error or "").startswith(f"stage '{stage}'")]
    stopped = {t.number for t in at_stage}
    durations = [t.seconds for t in finished if t.seconds is not None]
    stage_s = [t.metrics[f"{stage}_seconds"] for t in trials if stage and f"{stage}_seconds" in t.metrics]
    ends = [t.finished_at for t in finished if t.finished_at is not None]
    span = (max(ends) - min(t.started_at for t in trials)) if ends else None
    model = edits(study.calls)
    all_model_s = sum(c.latency_s for c in study.calls)
    from_edits = [t for t in trials if t.proposer == "evolve" and t.llm_call_id is not None]
    baseline = next((t for t in trials if t.number == 0), None)
    best = best_trial(study)
    base_value = baseline.value if baseline is not None and baseline.state == "complete" else None
    speedup = _ratio(base_value, best.value if best else None, study.direction)
    start = [t for t in trials if baseline is not None and t.state == "complete" and _program(t) == _program(baseline)]
    start_values = [t.value for t in start if t.value is not None]
    fastest_start = _better(study.direction)(start_values) if start_values else None
    return {
        "study": study.name,
        "direction": study.direction,
        "trials": len(trials),
        "interrupted": len(study.trials) - len(trials),
        "states": dict(Counter(t.state for t in trials)),
        "by_proposer": dict(Counter(t.proposer for t in trials)),
        "failed": len(failed),
        "stage": stage,
        "failed_at_stage": len(at_stage),
        "failed_after_stage": len(failed) - len(at_stage),
        "failure_examples": list(dict.fromkeys(" ".join((t.error or "").split())[:120] for t in failed))[:EXAMPLES],
        "edits": model,
        "model_calls_by_purpose": dict(Counter(c.purpose for c in study.calls)),
        "model_s_total": all_model_s,
        "model_s_per_proposal": _div(model["latency_s_total"], max(len(trials) - 1, 0)),
        "model_s_per_applied_edit": _div(model["latency_s_total"], model["applied"]),
        "edited_trials": len(from_edits),
        "edited_passed_stage": sum(1 for t in from_edits if t.finished_at is not None and t.number not in stopped),
        "edited_complete": sum(1 for t in from_edits if t.state == "complete"),
        "edited_improved": _improvements(trials, study.direction),
        "wall_s": wall_s,
        "wall_s_per_trial": _div(wall_s, len(trials)) if wall_s is not None else None,
        "span_s": span,
        "span_s_per_trial": _div(span, len(trials)) if span is not None else None,
        "eval_s_median": _median(durations),
        "eval_s_mean": _mean(durations),
        "eval_s_total": sum(durations),
        "stage_s_median": _median(stage_s),
        "busy_over_span": _div(sum(durations) + all_model_s, span) if span else None,
        "baseline": None if baseline is None else _point(baseline),
        "best": None if best is None else _point(best),
        "speedup": speedup,
        "start_program_values": start_values,
        "speedup_vs_best_start_run": _ratio(fastest_start, best.value if best else None, study.direction),
        "best_is_start_program": None if best is None or baseline is None else _program(best) == _program(baseline),
        "best_by_proposer": _best_by_proposer(trials, study.direction),
    }


def _ratio(base: float | None, best: float | None, direction: str) -> float | None:
    """How many times better ``best`` is than ``base``: base / best when minimizing, best / base when maximizing."""
    if base is None or best is None or not best or not base:
        return None
    return base / best if direction == "minimize" else best / base


def _program(trial: TrialRecord) -> tuple[str, ...]:
    """A trial's text parameters (its program) with whitespace collapsed: what "the same program" compares."""
    return tuple(" ".join(v.split()) for _, v in sorted(trial.params.items()) if isinstance(v, str))


def _best_by_proposer(trials: Sequence[TrialRecord], direction: str) -> dict[str, float]:
    """The best complete value each proposer's trials reached."""
    values: dict[str, list[float]] = {}
    for t in trials:
        if t.state == "complete" and t.value is not None:
            values.setdefault(t.proposer, []).append(t.value)
    return {proposer: _better(direction)(v) for proposer, v in sorted(values.items())}


def _point(trial: TrialRecord) -> dict[str, Any]:
    return {
        "number": trial.number,
        "state": trial.state,
        "value": trial.value,
        "proposer": trial.proposer,
        "metrics": dict(trial.metrics),
        "params": _shown_params(trial.params),
    }


def _improvements(trials: Sequence[TrialRecord], direction: str) -> int:
    """Trials proposed from a model's edit that beat every complete trial before them."""
    better = _better(direction)
    best: float | None = None
    count = 0
    for trial in sorted(trials, key=lambda t: t.number):
        if trial.state != "complete" or trial.value is None:
            continue
        if best is not None and better(trial.value, best) != best and trial.llm_call_id is not None:
            count += 1
        best = trial.value if best is None else better(trial.value, best)
    return count

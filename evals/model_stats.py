"""The model in the loop, measured: calls, tokens, latency and how often its proposals are valid.

For each run of an optimizer that uses a model, :func:`run_model_stats` reads the study's stored model calls
(``study.llm_calls``) once the run is over and keeps counts in the run's record (key ``"llm"``);
:func:`aggregate` pools them per optimizer for the report.

Definitions:

- **parsed rate**: share of ``propose`` calls whose reply parsed as JSON at all.
- **valid rate before repair**: over the ``propose`` calls whose reply parsed, the candidates valid for the
  space (``read_candidates(space, parsed).valid``) divided by all items in those replies
  (``CandidateCheck.total``). Pooled: summed over every call of every run, then divided.
- **valid candidates**: what the model delivered once repair turns are counted too (valid items of
  ``propose`` replies plus valid items of ``repair`` replies), before duplicates are dropped.
- **s per candidate** = total model latency / valid candidates; **tokens per candidate** likewise.
- **repeated**: valid candidates identical to an earlier valid candidate of the same run.
- **failed calls**: no reply at all (the backend raised after its retries); **parse errors**: a reply came but
  it was not usable JSON (both are stored with an ``error``).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from agent.proposers.llm import read_candidates
from agent.space import Space
from agent.storage import LLMCallRecord

Runs = Sequence[Mapping[str, Any]]

#: Distinct validation problems of the model's replies kept per run, to see why candidates were invalid.
MAX_INVALID_KEPT = 5


def _key(params: Mapping[str, Any]) -> str:
    return json.dumps(dict(params), sort_keys=True, default=str)


def run_model_stats(space: Space, calls: Sequence[LLMCallRecord], proposers: Iterable[str]) -> dict[str, Any]:
    """The JSON-ready model record of one run.

    Args:
        space: the problem's space, against which every reply is re-read.
        calls: the study's model calls, oldest first (``study.llm_calls``).
        proposers: the proposer of every trial of the run (``t.proposer for t in study.trials``).

    Returns:
        counts (``calls`` by purpose, ``failed_calls``, ``parse_errors``, ``propose_calls``,
        ``propose_parsed``, ``items_before_repair``, ``valid_before_repair``, ``valid_candidates``,
        ``repeated_candidates``), totals (``prompt_tokens``, ``completion_tokens``, ``latency_s``),
        ``trials_by_proposer``, the first distinct ``invalid_examples`` (why items were invalid) and
        ``per_call`` (purpose, latency and tokens of each call, for medians).
    """
    counts: Counter[str] = Counter()
    seen: set[str] = set()
    invalid: list[str] = []
    per_call: dict[str, list[Any]] = {"purpose": [], "latency_s": [], "prompt_tokens": [], "completion_tokens": []}
    for call in calls:
        counts[f"calls_{call.purpose}"] += 1
        per_call["purpose"].append(call.purpose)
        per_call["latency_s"].append(round(call.latency_s, 4))
        per_call["prompt_tokens"].append(call.prompt_tokens)
        per_call["completion_tokens"].append(call.completion_tokens)
        if call.error is not None and call.reply is None:
            counts["failed_calls"] += 1
            continue
        if call.parsed is None:
            counts["parse_errors"] += 1
            continue
        check = read_candidates(space, call.parsed)
        for problem in check.problems:
            if len(invalid) < MAX_INVALID_KEPT and problem[:200] not in invalid:
                invalid.append(problem[:200])
        if call.purpose == "propose":
            counts["propose_parsed"] += 1
            counts["items_before_repair"] += check.total
            counts["valid_before_repair"] += len(check.valid)
        counts["valid_candidates"] += len(check.valid)
        for params, _ in check.valid:
            key = _key(params)
            counts["repeated_candidates"] += key in seen
            seen.add(key)
    return {
        "model": calls[0].model if calls else None,
        "calls": {purpose: counts[f"calls_{purpose}"] for purpose in dict.fromkeys(per_call["purpose"])},
        "failed_calls": counts["failed_calls"],
        "parse_errors": counts["parse_errors"],
        "propose_calls": counts["calls_propose"],
        "propose_parsed": counts["propose_parsed"],
        "items_before_repair": counts["items_before_repair"],
        "valid_before_repair": counts["valid_before_repair"],
        "valid_candidates": counts["valid_candidates"],
        "repeated_candidates": counts["repeated_candidates"],
        "prompt_tokens": sum(per_call["prompt_tokens"]),
        "completion_tokens": sum(per_call["completion_tokens"]),
        "latency_s": sum(c.latency_s for c in calls),
        "trials_by_proposer": dict(Counter(proposers)),
        "invalid_examples": invalid,
        "per_call": per_call,
    }


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def _median(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.median(kept)) if kept else None


def _summary(records: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Totals and medians of one optimizer's model records (one per run)."""

    def total(key: str) -> int | float:
        return sum(r[key] for r in records)

    fields = ("latency_s", "prompt_tokens", "completion_tokens")
    calls = [c for r in records for c in zip(*(r["per_call"][f] for f in fields), strict=True)]  # (s, prompt, compl.)
    n_calls = len(calls)
    tokens = total("prompt_tokens") + total("completion_tokens")
    trials: Counter[str] = Counter()
    purposes: Counter[str] = Counter()
    for r in records:
        trials.update(r["trials_by_proposer"])
        purposes.update(r["calls"])
    invalid = list(dict.fromkeys(p for r in records for p in r.get("invalid_examples", ())))
    return {
        "runs": len(records),
        "invalid_examples": invalid[:MAX_INVALID_KEPT],
        "model": next((r["model"] for r in records if r["model"]), None),
        "calls": n_calls,
        "calls_by_purpose": dict(purposes),
        "failed_calls": total("failed_calls"),
        "parse_errors": total("parse_errors"),
        "propose_calls": total("propose_calls"),
        "propose_parsed": total("propose_parsed"),
        "parsed_rate": _ratio(total("propose_parsed"), total("propose_calls")),
        "items_before_repair": total("items_before_repair"),
        "valid_before_repair": total("valid_before_repair"),
        "valid_rate_before_repair": _ratio(total("valid_before_repair"), total("items_before_repair")),
        "median_run_valid_rate_before_repair": _median(
            [_ratio(r["valid_before_repair"], r["items_before_repair"]) for r in records]
        ),
        "valid_candidates": total("valid_candidates"),
        "repeated_candidates": total("repeated_candidates"),
        "trials_by_proposer": dict(trials),
        "prompt_tokens": total("prompt_tokens"),
        "completion_tokens": total("completion_tokens"),
        "latency_s": total("latency_s"),
        "median_s_per_call": _median([c[0] for c in calls]),
        "s_per_call": _ratio(total("latency_s"), n_calls),
        "s_per_candidate": _ratio(total("latency_s"), total("valid_candidates")),
        "median_run_s_per_candidate": _median([_ratio(r["latency_s"], r["valid_candidates"]) for r in records]),
        "median_tokens_per_call": _median([c[1] + c[2] for c in calls]),
        "median_prompt_tokens_per_call": _median([c[1] for c in calls]),
        "median_completion_tokens_per_call": _median([c[2] for c in calls]),
        "tokens_per_candidate": _ratio(tokens, total("valid_candidates")),
        "completion_tokens_per_s": _ratio(total("completion_tokens"), total("latency_s")),
    }


def aggregate(runs: Runs, optimizers: Sequence[str] | None = None) -> dict[str, Any]:
    """Per optimizer (in ``optimizers`` order when given), the pooled model numbers of its runs.

    Only runs with a model record (``run["llm"]``) count; an optimizer without any is left out, so the
    result is empty when no run used a model.
    """
    by_optimizer: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    ask_seconds: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        if run.get("llm"):
            by_optimizer[run["optimizer"]].append(run["llm"])
            ask_seconds[run["optimizer"]] += run.get("ask_seconds", [])
    order = [o for o in (optimizers or by_optimizer) if o in by_optimizer]
    order += [o for o in by_optimizer if o not in order]
    # The mean, not the median: most asks are served from the model's buffered batch, the cost is in the rest.
    return {o: {**_summary(by_optimizer[o]), "mean_ask_s": _mean(ask_seconds[o])} for o in order}


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if values else None

"""The model numbers: per-run counts from hand-made call records, pooling over runs, the report section."""

from __future__ import annotations

from typing import Any

import pytest

from agent.space import Categorical, Float, Space
from agent.storage import LLMCallRecord
from evals.model_stats import aggregate, run_model_stats
from evals.report import render
from evals.runner import best_so_far
from evals.scoring import summarize

SPACE = Space(x=Float(0.0, 1.0), c=Categorical(["a", "b"]))


def _call(purpose: str, parsed: Any = None, *, reply: str | None = "{}", error: str | None = None, **kw: Any):
    kw = {"prompt_tokens": 100, "completion_tokens": 20, "latency_s": 2.0, **kw}
    return LLMCallRecord(purpose, "smollm2", [], reply=reply, parsed=parsed, error=error, **kw)


def _candidates(*params: dict[str, Any]) -> dict[str, Any]:
    return {"candidates": [{"params": p, "rationale": "r"} for p in params]}


CALLS = [
    # 3 items, 2 valid (x out of bounds), then a repair that fixes one.
    _call("propose", _candidates({"x": 0.5, "c": "a"}, {"x": 2.0, "c": "a"}, {"x": 0.1, "c": "b"})),
    _call("repair", _candidates({"x": 0.9, "c": "a"}), prompt_tokens=150, latency_s=1.0),
    # Not JSON: a parse error, repaired into one valid candidate that repeats the first one.
    _call("propose", None, reply="oops", error="the reply is not valid JSON", completion_tokens=5),
    _call("repair", _candidates({"x": 0.5, "c": "a"}), latency_s=1.0),
    # A bare list is read too: 2 items, 1 valid (unknown category).
    _call("propose", [{"x": 0.2, "c": "a"}, {"x": 0.3, "c": "z"}]),
    # No reply at all: the backend failed after its retries.
    _call("propose", None, reply=None, error="timed out", prompt_tokens=0, completion_tokens=0, latency_s=0.0),
]


def test_run_model_stats_counts_calls_validity_and_tokens() -> None:
    stats = run_model_stats(SPACE, CALLS, ["bo", "llm", "llm", "bo", "llm"])
    assert stats["model"] == "smollm2"
    assert stats["calls"] == {"propose": 4, "repair": 2}
    assert stats["failed_calls"] == 1 and stats["parse_errors"] == 1
    assert stats["propose_calls"] == 4 and stats["propose_parsed"] == 2
    # Before repair, only parsed propose replies count: (2 + 1) valid of (3 + 2) items.
    assert (stats["valid_before_repair"], stats["items_before_repair"]) == (3, 5)
    assert stats["valid_candidates"] == 3 + 1 + 1
    assert stats["repeated_candidates"] == 1
    assert stats["prompt_tokens"] == 100 + 150 + 100 + 100 + 100 + 0
    assert stats["completion_tokens"] == 20 + 20 + 5 + 20 + 20 + 0
    assert stats["latency_s"] == pytest.approx(2 + 1 + 2 + 1 + 2 + 0)
    assert stats["trials_by_proposer"] == {"bo": 2, "llm": 3}
    assert stats["invalid_examples"][0].startswith("candidate 2:") and len(stats["invalid_examples"]) == 2
    assert stats["per_call"]["purpose"] == ["propose", "repair", "propose", "repair", "propose", "propose"]


def test_no_calls_give_zeros_and_no_rates() -> None:
    stats = run_model_stats(SPACE, [], ["bo"] * 3)
    assert stats["calls"] == {} and stats["model"] is None
    summary = aggregate([{"optimizer": "auto-local", "llm": stats}])["auto-local"]
    assert summary["valid_rate_before_repair"] is None and summary["s_per_candidate"] is None
    assert summary["median_s_per_call"] is None and summary["trials_by_proposer"] == {"bo": 3}


def _run(optimizer: str, seed: int, values: list[float], llm: dict[str, Any] | None = None) -> dict[str, Any]:
    run = {
        "problem": "p",
        "optimizer": optimizer,
        "seed": seed,
        "values": values,
        "best_so_far": best_so_far(values),
        "ask_seconds": [0.1] * len(values),
        "eval_seconds": [0.0] * len(values),
        "failures": 0,
    }
    return run if llm is None else {**run, "llm": llm}


def test_aggregate_pools_runs_and_the_report_shows_it_only_when_a_model_ran() -> None:
    one = run_model_stats(SPACE, CALLS, ["llm", "bo"])
    two = run_model_stats(SPACE, CALLS[:2], ["llm", "llm"])  # 2 of 3 valid before repair, 3 valid in all
    runs = [
        _run("randomsearch", 0, [3.0, 2.0]),
        _run("randomsearch", 1, [2.0, 2.0]),
        _run("bo", 0, [1.0, 1.0]),
        _run("bo", 1, [2.0, 1.0]),
        _run("auto-local", 0, [2.0, 0.5], one),
        _run("auto-local", 1, [1.0, 0.5], two),
    ]
    model = aggregate(runs, ["bo", "randomsearch", "auto-local"])
    assert list(model) == ["auto-local"]
    m = model["auto-local"]
    assert m["runs"] == 2 and m["calls"] == 8 and m["calls_by_purpose"] == {"propose": 5, "repair": 3}
    assert m["valid_rate_before_repair"] == pytest.approx((3 + 2) / (5 + 3))
    assert m["median_run_valid_rate_before_repair"] == pytest.approx((3 / 5 + 2 / 3) / 2)
    assert m["parsed_rate"] == pytest.approx(3 / 5)
    assert m["valid_candidates"] == 5 + 3
    assert m["s_per_candidate"] == pytest.approx((8 + 3) / 8)
    assert m["median_run_s_per_candidate"] == pytest.approx((8 / 5 + 3 / 3) / 2)
    assert m["median_s_per_call"] == pytest.approx(1.5)  # of 2, 1, 2, 1, 2, 0 and 2, 1
    assert m["median_tokens_per_call"] == pytest.approx(120)
    assert m["tokens_per_candidate"] == pytest.approx((one["prompt_tokens"] + one["completion_tokens"] + 290) / 8)
    assert m["trials_by_proposer"] == {"llm": 3, "bo": 1}
    assert m["mean_ask_s"] == pytest.approx(0.1)
    assert m["invalid_examples"] == one["invalid_examples"]

    meta = {
        "optimizers": ["bo", "randomsearch", "auto-local"],
        "checkpoints": [1, 2],
        "problems": [{"name": "p", "suite": "s", "dims": 2, "optimum": 0.0}],
    }
    summary = summarize(runs, meta)
    assert summary["model"] == model
    full_meta = {
        **meta,
        "command": "python -m evals.run",
        "date": "today",
        "machine": {"platform": "x", "cpu": "y", "cpu_count": 2, "python": "3.11", "packages": {}, "git": None},
        "load_average": {"start": [1.0, 1.0, 1.0], "end": [1.0, 1.0, 1.0]},
        "trials": 2,
        "seeds": 2,
        "jobs": 1,
        "skipped": {},
        "model": {"optimizers": ["auto-local"], "name": "SmolLM2", "xllamacpp": "0.2", "threads": 2},
    }
    report = render(full_meta, summary)
    assert "## Model in the loop" in report and "| valid-proposal rate before repair (pooled) | 62.5% (5/8) |" in report
    assert "tunesmith-auto-local" in report and "2 thread(s)" in report
    assert "Why items were invalid (tunesmith-auto-local, first 2 distinct): `candidate 2:" in report
    assert report.index("## Model in the loop") < report.index("## Per problem")

    plain = [r for r in runs if r["optimizer"] != "auto-local"]
    meta["optimizers"] = ["bo", "randomsearch"]
    without = summarize(plain, meta)
    assert "model" not in without
    del full_meta["model"]
    assert "Model in the loop" not in render({**full_meta, "optimizers": meta["optimizers"]}, without)

"""Scoring: hand-computed normalized scores, saturation, failures, and an end-to-end run of the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from evals.run import main
from evals.runner import best_so_far
from evals.scoring import default_checkpoints, summarize


def _run(problem: str, optimizer: str, seed: int, values: list[float | None]) -> dict[str, Any]:
    return {
        "problem": problem,
        "optimizer": optimizer,
        "seed": seed,
        "values": values,
        "best_so_far": best_so_far(values),
        "ask_seconds": [0.1] * len(values),
        "eval_seconds": [0.0] * len(values),
        "failures": sum(v is None for v in values),
    }


def _meta(problems: list[tuple[str, float | None]]) -> dict[str, Any]:
    return {
        "optimizers": ["bo", "randomsearch"],
        "checkpoints": [1, 2],
        "problems": [{"name": n, "suite": "s", "dims": 1, "optimum": opt} for n, opt in problems],
    }


def test_best_so_far_counts_failures_as_no_improvement() -> None:
    assert best_so_far([None, 3.0, None, 5.0, 1.0]) == [None, 3.0, 3.0, 3.0, 1.0]


def test_default_checkpoints() -> None:
    assert default_checkpoints(50) == [10, 20, 30, 50]
    assert default_checkpoints(12) == [10, 12]


def test_scores_are_relative_to_mean_random_search() -> None:
    runs = [
        _run("p", "randomsearch", 0, [4.0, 2.0]),
        _run("p", "randomsearch", 1, [2.0, 3.0]),
        _run("p", "bo", 0, [3.0, 1.0]),
        _run("p", "bo", 1, [None, 0.0]),  # a failure first: worst value seen (4.0) until a success
    ]
    summary = summarize(runs, _meta([("p", 0.0)]))
    bo = summary["problems"]["p"]["optimizers"]["bo"]
    # random-search mean best so far: t=1 (4+2)/2 = 3, t=2 (2+2)/2 = 2
    assert bo["scores"]["1"]["mean"] == pytest.approx((3 / 3 + 4 / 3) / 2)
    assert bo["scores"]["2"]["mean"] == pytest.approx((1 / 2 + 0 / 2) / 2)
    assert bo["scores"]["2"]["se"] == pytest.approx(0.25)
    assert summary["problems"]["p"]["optimizers"]["randomsearch"]["scores"]["2"]["mean"] == pytest.approx(1.0)
    assert bo["rank"] == 1.0 and bo["failures"] == 1
    assert summary["suites"]["s"]["optimizers"]["bo"]["mean_rank"] == 1.0


def test_unknown_optimum_is_the_best_found_and_saturation_is_left_out() -> None:
    runs = [
        # "easy": every random-search seed reaches the best value found by t=2, so t=2 has no scale.
        _run("easy", "randomsearch", 0, [0.3, 0.1]),
        _run("easy", "randomsearch", 1, [0.1, 0.2]),
        _run("easy", "bo", 0, [0.2, 0.1]),
        _run("easy", "bo", 1, [0.2, 0.1]),
        _run("hard", "randomsearch", 0, [5.0, 3.0]),
        _run("hard", "randomsearch", 1, [3.0, 3.0]),
        _run("hard", "bo", 0, [4.0, 1.0]),
        _run("hard", "bo", 1, [3.0, 2.0]),
    ]
    summary = summarize(runs, _meta([("easy", None), ("hard", None)]))
    easy, hard = summary["problems"]["easy"], summary["problems"]["hard"]
    assert easy["optimum"] == 0.1 and not easy["optimum_known"]
    assert easy["saturated"] == [2]
    assert easy["optimizers"]["bo"]["scores"]["2"]["mean"] is None
    # Suite score at t=2 comes from "hard" alone: optimum 1.0, random mean gap 2.0, bo gaps 0 and 1.
    assert summary["suites"]["s"]["optimizers"]["bo"]["scores"]["2"]["mean"] == pytest.approx(0.25)
    assert hard["optimizers"]["bo"]["scores"]["2"]["mean"] == pytest.approx(0.25)


@pytest.mark.slow
def test_cli_runs_end_to_end_and_summarize_reproduces_the_report(tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = ["--suite", "synthetic", "--problems", "branin", "--trials", "3", "--seeds", "2"]
    argv += ["--optimizers", "random,tpe,nosuch"]
    with pytest.raises(SystemExit):
        main(argv)
    argv[-1] = "random,tpe"
    assert main([*argv, "--jobs", "1", "--out", str(out)]) == 0
    report = (out / "results.md").read_text()
    assert "| randomsearch | 1.000" in report  # added as the baseline although not asked for
    assert "### branin" in report and "tunesmith-random" in report and "optuna-tpe" in report
    (out / "results.md").unlink()
    assert main(["--summarize", str(out / "results.json")]) == 0
    assert (out / "results.md").read_text() == report

"""The overhead harness end to end at tiny sizes: the shape of its JSON and markdown, never its timings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evals import overhead


def test_tiny_run_writes_every_section(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, data = tmp_path / "overhead.md", tmp_path / "overhead.json"
    argv = [
        "--trials", "10", "--marks", "5,10", "--window", "3",
        "--workers", "1,2", "--sleep", "0.01", "--per-worker", "2",
        "--bo-marks", "1,2", "--bo-problems", "branin", "--bo-seeds", "1",
        "--dir", str(tmp_path / "db"), "--out", str(out), "--json", str(data),
    ]  # fmt: skip
    assert overhead.main(argv) == 0

    results = json.loads(data.read_text())
    assert set(results) >= {"meta", "overhead", "throughput", "bo", "targets"}
    assert results["meta"]["machine"]["nproc"] >= 1
    assert results["meta"]["command"].startswith("python -m evals.overhead")
    for system in ("tunesmith", "optuna"):
        rows = results["overhead"][system]["per_mark"]
        assert [r["mark"] for r in rows] == [5, 10]
        assert [r["window"] for r in rows] == [[3, 5], [8, 10]]
        assert all(r["mean_ms"] > 0 and r["ask_mean_ms"] > 0 and r["tell_mean_ms"] > 0 for r in rows)
    throughput = results["throughput"]
    assert [r["workers"] for r in throughput] == [1, 2]
    assert [r["complete"] for r in throughput] == [2, 4]
    assert all(r["efficiency"] > 0 for r in throughput)
    (bo,) = results["bo"]["summary"]
    assert bo["problem"] == "branin" and [w["trials"] for w in bo["windows"]] == [[1, 1], [2, 2]]
    assert set(results["targets"]) == {"ms_per_trial_at_last_mark", "growth_last_over_first", "throughput_efficiency"}

    markdown = out.read_text()
    assert markdown in capsys.readouterr().out  # printed as well as written
    for heading in ("## ask + tell per trial", "## optimize throughput", "## bo suggestion time"):
        assert heading in markdown
    assert "| 10 |" in markdown and "Optuna" in markdown

    # The markdown can be rendered again from the JSON alone.
    assert overhead.main(["--summarize", str(data)]) == 0
    assert capsys.readouterr().out.strip() == markdown.strip()


def test_sections_and_marks_are_checked() -> None:
    with pytest.raises(SystemExit):
        overhead.parse_args(["--only", "nothing"])
    with pytest.raises(SystemExit):
        overhead.parse_args(["--trials", "10", "--marks", "5,20"])
    assert overhead.parse_args(["--trials", "1000"]).marks == [100, 1000]

"""The evolution benchmark's pure parts: its statistics, read back from a tiny SQLite study made with the Python API
and a scripted model (each kind of edit on record), the ``bo`` copy of a job, and the report rendered from JSON.

The runs themselves (the real CLI with the local model, minutes each) are what ``make bench-evolution`` does."""

from __future__ import annotations

import itertools
import json
import re
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from agent import Code, Float, Space, create_study
from agent.llm.client import LLMError
from agent.testing.scripted import ScriptedClient, ScriptedRequest
from evals.evolution import cli, runs
from evals.evolution.stats import (
    ALREADY_TRIED,
    APPLIED,
    NOT_APPLIED,
    OTHER,
    Study,
    TrialRecord,
    edit_outcome,
    read_study,
    summarize,
)

PROGRAM = "def score(x):\n    return x + 1\n"


def _constant(request: ScriptedRequest) -> int:
    return int(re.search(r"return x \+ (\d+)", request.messages[-1]["content"]).group(1))  # type: ignore[union-attr]


def _edit(old: str, new: str) -> str:
    return f"Change it.\n<<<<<<< SEARCH\n{old}\n=======\n{new}\n>>>>>>> REPLACE\n"


def fresh_constants() -> Callable[[ScriptedRequest], str]:
    """A model whose every edit applies to the program it is shown and gives a program never seen before."""
    new = itertools.count(10)

    def reply(request: ScriptedRequest) -> str:
        return _edit(f"    return x + {_constant(request)}", f"    return x + {next(new)}")

    return reply


def the_same(request: ScriptedRequest) -> str:
    c = _constant(request)
    return _edit(f"    return x + {c}", f"    return x + {c}   # only a comment")


def make_study(path: Path) -> Path:
    """Trial 0 the start; 1 an edit that fails its tests stage; 2 the partner's, after an edit that does not
    apply, one already tried and a model that fails; 3 an edit that completes and improves the best."""
    fresh = fresh_constants()
    client = ScriptedClient(
        [fresh, _edit("    return x * 9", "    return x * 10"), the_same, LLMError("server gone")], default=fresh
    )
    study = create_study(
        "tiny",
        Space(program=Code(PROGRAM), x=Float(0, 1)),
        direction="minimize",
        metric="seconds",
        storage=f"sqlite:///{path}",
        proposer="evolve",
        model=client,
        seed=3,
        proposer_options={"attempts": 3},
    )
    study.tell(study.ask(), {"seconds": 2.0, "tests_seconds": 0.25})
    study.tell(study.ask(), state="failed", error="stage 'tests' exited with status 1")
    study.tell(study.ask(), {"seconds": 3.0, "tests_seconds": 0.25})
    study.tell(study.ask(), {"seconds": 0.5, "tests_seconds": 0.75})
    return path


def test_statistics_of_a_tiny_stored_study(tmp_path: Path) -> None:
    study = read_study(make_study(tmp_path / "tiny.db"))
    assert [edit_outcome(c.error) for c in study.calls] == [APPLIED, NOT_APPLIED, ALREADY_TRIED, OTHER, APPLIED]
    s = summarize(study, stage="tests", wall_s=8.0)
    assert s["trials"] == 4 and s["by_proposer"]["evolve"] == 3 and s["states"] == {"complete": 3, "failed": 1}
    e = s["edits"]
    assert (e["calls"], e["applied"], e["applied_share"]) == (5, 2, 0.4)
    assert e["rejected"] == {NOT_APPLIED: 1, ALREADY_TRIED: 1, OTHER: 1}
    assert e["examples"][OTHER] == ["server gone"] and "did not apply" in e["examples"][NOT_APPLIED][0]
    assert (s["failed_at_stage"], s["failed_after_stage"]) == (1, 0)
    assert (s["edited_trials"], s["edited_passed_stage"], s["edited_complete"], s["edited_improved"]) == (2, 1, 1, 1)
    assert s["baseline"]["value"] == 2.0 and s["best"]["number"] == 3 and s["speedup"] == pytest.approx(4.0)
    assert s["stage_s_median"] == 0.25 and s["wall_s_per_trial"] == 2.0
    assert s["model_s_per_proposal"] == pytest.approx(e["latency_s_total"] / 3)
    assert s["best"]["params"]["x"] == pytest.approx(study.trials[3].params["x"])
    # trial 2 is the partner's fallback: the starting program again, slower; the best is an edited program
    assert s["start_program_values"] == [2.0, 3.0] and s["best_is_start_program"] is False
    assert s["speedup_vs_best_start_run"] == pytest.approx(4.0)
    assert s["best_by_proposer"] == {"bo": 3.0, "evolve": 0.5}
    json.dumps(s)  # the JSON report holds it as it is


def test_speedup_and_failures_of_hand_made_trials() -> None:
    def trial(number: int, state: str, value: float | None, error: str | None = None) -> TrialRecord:
        return TrialRecord(number, state, value, "evolve", float(number), number + 0.5, error=error)

    trials = [
        trial(0, "complete", 0.9),
        trial(1, "failed", None, "stage 'builds' exited with status 1"),
        trial(2, "failed", None, "the command exited with status 1"),
        trial(3, "complete", 0.95),
    ]
    s = summarize(Study("nas", "maximize", trials, []), stage="builds")
    assert s["best"]["number"] == 3 and s["speedup"] == pytest.approx(0.95 / 0.9)
    assert (s["failed_at_stage"], s["failed_after_stage"]) == (1, 1)
    assert s["edits"]["calls"] == 0 and s["edits"]["applied_share"] is None and s["model_s_per_applied_edit"] is None
    assert s["eval_s_median"] == 0.5 and s["span_s"] == 3.5


def test_the_bo_copy_changes_the_proposer_alone(tmp_path: Path) -> None:
    original = tomllib.loads((runs.EXAMPLES / "nas-space" / "job.toml").read_text())
    copy = tomllib.loads((runs.prepare("nas-space", tmp_path / "bo", bo=True) / "job.toml").read_text())
    assert copy["proposer"] == {"kind": "bo"}
    assert {k: v for k, v in copy.items() if k != "proposer"} == {k: v for k, v in original.items() if k != "proposer"}
    assert (tmp_path / "bo" / "train.py").is_file() and not list((tmp_path / "bo").glob("*.db"))


def test_the_report_renders_from_the_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from evals.overhead import metadata

    summary = summarize(read_study(make_study(tmp_path / "tiny.db")), stage="tests", wall_s=8.0)
    process = {"argv": ["python", "-m", "agent.cli"], "exit": 0, "wall_s": 8.0, "cut_at_cap": False, "output_tail": ""}
    results = {
        "meta": {**metadata([]), "command": "python -m evals.evolution", "seconds": 9.0},
        "sizes": {"trials_speedup": 4, "trials_nas": 4, "cap_s": 600.0},
        "sandbox": [runs.sandbox_overhead(runs.EXAMPLES / "code-speedup", repeats=1)],
        "runs": {
            name: {"example": name, "proposer": "evolve", "process": process, "summary": summary}
            for name in ("code-speedup", "nas-code")
        },
    }
    saved = tmp_path / "e.json"
    saved.write_text(json.dumps(results))
    assert cli.main(["--summarize", str(saved), "--out", str(tmp_path / "e.md")]) == 0
    text = (tmp_path / "e.md").read_text()
    for heading in ("Seconds per code candidate", "Share of edits that apply", "Speed-up found", "Architecture"):
        assert f"## {heading}" in text
    assert "**40% (2/5)**" in text and "**4.00x**" in text and "examples/code-speedup" in text
    assert capsys.readouterr().out.strip() == text.strip()

"""The ``evolve`` proposer with a scripted model (the edge cases a real model produces only by chance), a real
gateway and a real SQLite file: the starting program first, edits with their lineage and diff, rejected edits
on record and shown to the model, duplicates after normalization, the partner when nothing applies, and a
replay of a recorded run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent import Code, Float, Space, create_study
from agent.errors import ConfigError
from agent.study import Study
from agent.testing.scripted import ScriptedClient, ScriptedRequest

PROGRAM = "def score(x):\n    return x + 1\n"


def edit(old: str, new: str, idea: str = "Change the constant.") -> str:
    return f"{idea}\n<<<<<<< SEARCH\n{old}\n=======\n{new}\n>>>>>>> REPLACE\n"


def counting_up(request: ScriptedRequest) -> str:
    """A model that reads the program it is shown and raises its constant by one: every edit applies."""
    shown = request.messages[-1]["content"]
    constant = int(re.search(r"return x \+ (\d+)", shown).group(1))  # type: ignore[union-attr]
    return edit(f"    return x + {constant}", f"    return x + {constant + 1}", f"Try {constant + 1}.")


def evolving(tmp_path: Path, client: ScriptedClient, name: str = "evolve", **options: object) -> Study:
    return create_study(
        name,
        Space(program=Code(PROGRAM), x=Float(0, 1)),
        direction="maximize",
        storage=f"sqlite:///{tmp_path / 'evolve.db'}",
        proposer="evolve",
        model=client,
        seed=3,
        proposer_options={"attempts": 2, **options},
    )


def value_of(program: str) -> float:
    namespace: dict[str, object] = {}
    exec(program, namespace)  # the test's own programs, not a model's
    return float(namespace["score"](1))  # type: ignore[operator]


def run(study: Study, trials: int) -> None:
    for _ in range(trials):
        trial = study.ask()
        study.tell(trial, value_of(str(trial.params["program"])))


def test_the_first_program_is_the_starting_one_then_edits_carry_lineage_and_a_diff(tmp_path: Path) -> None:
    study = evolving(tmp_path, ScriptedClient(default=counting_up))
    run(study, 3)
    first, second, third = study.trials
    assert first.params["program"] == PROGRAM and first.proposer == "evolve" and not first.parents
    assert second.params["program"] == PROGRAM.replace("x + 1", "x + 2")
    assert second.parents == (0,) and second.rationale == "Try 2."
    assert "-    return x + 1" in study.artifact(second, "diff").decode()
    assert study.artifact(second, "program").decode() == second.params["program"]
    assert third.parents == (1,), "the best program is the parent"
    assert second.llm_call_id is not None


def test_an_edit_that_does_not_apply_costs_no_evaluation_and_is_shown_next_time(tmp_path: Path) -> None:
    wrong = edit("    return x * 100", "    return x * 200")
    client = ScriptedClient([wrong], default=counting_up)
    study = evolving(tmp_path, client)
    run(study, 2)
    assert len(study.trials) == 2 and study.trials[1].params["program"].endswith("x + 2\n")
    failed = [call for call in study.llm_calls if call.error]
    assert len(failed) == 1 and "the edit did not apply" in (failed[0].error or "")
    assert "the edit did not apply" in client.requests[1].messages[-1]["content"], "the next prompt says why"


def test_a_program_already_tried_after_normalization_is_rejected(tmp_path: Path) -> None:
    same = edit("    return x + 1", "    return x + 1   # the same, commented")
    client = ScriptedClient([same], default=counting_up)
    study = evolving(tmp_path, client)
    run(study, 2)
    assert any("already tried" in (call.error or "") for call in study.llm_calls)
    assert study.trials[1].params["program"].endswith("x + 2\n")


def test_when_no_attempt_applies_the_partner_proposes(tmp_path: Path) -> None:
    study = evolving(tmp_path, ScriptedClient(default="I would rather not change anything."))
    run(study, 2)
    fallback = study.trials[1]
    assert fallback.proposer in ("bo", "random") and "partner proposes" in (fallback.rationale or "")
    assert len([call for call in study.llm_calls if call.error]) == 2, "attempts = 2, both on record"


def test_a_space_without_one_code_parameter_is_refused_when_the_study_is_created(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="evolves one Code parameter; the space has none"):
        create_study(
            "no-code",
            Space(x=Float(0, 1)),
            storage=f"sqlite:///{tmp_path / 'n.db'}",
            proposer="evolve",
            model=ScriptedClient(default=counting_up),
        )
    assert not (tmp_path / "n.db").exists(), "refused before anything was written"


def test_a_recorded_run_replays_exactly(tmp_path: Path) -> None:
    recorded = evolving(tmp_path, ScriptedClient(default=counting_up), name="recorded")
    run(recorded, 5)
    replayed = create_study(
        "replayed",
        recorded.space,
        direction="maximize",
        storage=recorded.storage,
        proposer="evolve",
        model="replay:recorded",
        seed=3,
        proposer_options={"attempts": 2},
    )
    run(replayed, 5)
    assert [(t.params, t.parents, t.rationale) for t in replayed.trials] == [
        (t.params, t.parents, t.rationale) for t in recorded.trials
    ]


def test_the_program_of_an_interrupted_trial_is_proposed_again(tmp_path: Path) -> None:
    # Its process died before it produced anything (kill -9): the program was never evaluated.
    study = evolving(tmp_path, ScriptedClient(default=counting_up))
    run(study, 1)
    cut_short = study.ask()
    study.tell(cut_short, state="failed", error="interrupted", interrupted=True)
    assert study.ask().params["program"] == cut_short.params["program"]

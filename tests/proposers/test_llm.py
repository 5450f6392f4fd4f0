"""The llm proposer, history rendering and the auto portfolio, with a scripted model (unit level).

The real-model and real-HTTP tests are in tests/llm; these pin down edge cases a real model produces
only by chance: malformed JSON, invalid values, copies of past points, an empty answer.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from agent.budget import Budget
from agent.history import render_history
from agent.llm.client import LLMError, estimate_tokens, extract_json
from agent.llm.gateway import ModelGateway, estimate_prompt_tokens
from agent.proposers import StudyView
from agent.proposers.auto import AutoProposer, improvement_counts
from agent.proposers.llm import LLMProposer, batch_schema, read_candidates
from agent.proposers.random import RandomProposer
from agent.space import Categorical, Float, Int, Space, Text
from agent.storage import LLMCallRecord, SQLStorage
from agent.testing.scripted import ScriptedClient
from tests.proposers.conftest import make_trials

SPACE = Space(x=Float(0.0, 1.0), n=Int(1, 8), c=Categorical(["a", "b"]))


def candidates(*params: dict, rationale: str = "why not") -> str:
    return json.dumps({"candidates": [{"params": p, "rationale": rationale} for p in params]})


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[SQLStorage]:
    storage = SQLStorage(f"sqlite:///{tmp_path / 'llm.db'}")
    yield storage
    storage.close()


class Proposing:
    """An LLMProposer over a real gateway and storage, and what they recorded."""

    def __init__(self, client: ScriptedClient, storage: SQLStorage) -> None:
        self.storage = storage
        self.study_id = storage.create_study("llm", "minimize", None, SPACE.to_dict(), {}).id
        self.gateway = ModelGateway(client, storage, self.study_id, free=True)
        self.proposer = LLMProposer(self.gateway, RandomProposer(0), batch_size=2)

    @property
    def calls(self) -> list[LLMCallRecord]:
        return self.storage.llm_calls(self.study_id)


def test_valid_candidates_are_used_with_their_rationale_and_call(storage: SQLStorage) -> None:
    client = ScriptedClient(
        [candidates({"x": 0.5, "n": 2, "c": "a"}, {"x": 0.25, "n": 3, "c": "b"}, rationale="near best")],
        prompt_tokens=10,
    )
    run = Proposing(client, storage)
    view = StudyView(SPACE, "minimize", make_trials(SPACE, [1.0, 2.0]), seed=0)
    first = run.proposer.propose(view, 1, [])
    second = run.proposer.propose(view, 1, [first[0].params])  # served from the batch: no second call
    assert [p.params for p in first + second] == [{"x": 0.5, "n": 2, "c": "a"}, {"x": 0.25, "n": 3, "c": "b"}]
    [call] = run.calls
    assert all(p.proposer == "llm" and p.rationale == "near best" and p.llm_call_id == call.id for p in first + second)
    assert len(client.requests) == 1 and call.purpose == "propose" and call.prompt_tokens == 10
    assert client.requests[0].schema == batch_schema(SPACE, 2) and client.requests[0].temperature == 0.7


def test_invalid_items_get_one_repair_turn_quoting_the_errors(storage: SQLStorage) -> None:
    client = ScriptedClient(
        [
            candidates({"x": 1.5, "n": 2, "c": "a"}, {"x": 0.5, "n": 9, "c": "z"}),
            candidates({"x": 0.9, "n": 2, "c": "a"}),
        ]
    )
    run = Proposing(client, storage)
    [proposal] = run.proposer.propose(StudyView(SPACE, "minimize", [], seed=0), 1, [])
    propose, repair_call = run.calls
    assert proposal.params == {"x": 0.9, "n": 2, "c": "a"} and proposal.llm_call_id == repair_call.id
    repair = client.requests[1].messages[-1]["content"]
    for line in ("candidate 1: x: 1.5 is above the maximum 1.0", "candidate 2: n: 9 is above the maximum 8"):
        assert line in repair
    assert "candidate 2: c: 'z' is not one of 'a', 'b'" in repair
    assert client.requests[1].messages[-2]["role"] == "assistant"
    assert (propose.purpose, repair_call.purpose) == ("propose", "repair")


def test_a_reply_without_one_valid_candidate_is_a_failed_call_on_record(storage: SQLStorage) -> None:
    """The probe: replies whose every candidate was invalid were stored without an error, so ``status``
    counted them as good calls. One valid candidate makes a reply usable; none makes it a failure."""
    client = ScriptedClient(
        [
            candidates({"x": 1.5, "n": 2, "c": "a"}, {"x": 0.5, "n": 9, "c": "a"}),
            candidates({"x": 0.9, "n": 2, "c": "a"}, {"x": 0.5, "n": 2, "c": "z"}),
        ]
    )
    run = Proposing(client, storage)
    [proposal] = run.proposer.propose(StudyView(SPACE, "minimize", [], seed=0), 1, [])
    propose, repair = run.calls
    assert proposal.params == {"x": 0.9, "n": 2, "c": "a"} and proposal.llm_call_id == repair.id
    assert propose.error is not None and propose.error.startswith("no valid candidate in the reply: ")
    assert "candidate 1: x: 1.5 is above the maximum 1.0" in propose.error and propose.reply is not None
    assert repair.error is None
    spend = storage.spend(run.study_id)
    assert (spend.calls, spend.failed_calls) == (2, 1)


def test_each_model_call_is_logged_at_debug_with_its_tokens_and_valid_candidates(
    storage: SQLStorage, caplog: pytest.LogCaptureFixture
) -> None:
    client = ScriptedClient(
        [
            candidates({"x": 0.5, "n": 2, "c": "a"}, {"x": 0.2, "n": 3, "c": "b"}, {"x": 1.5, "n": 2, "c": "a"}),
            "{not json",
            candidates({"x": 7.0, "n": 2, "c": "a"}),
            LLMError("server gone", attempts=2),
        ],
        prompt_tokens=812,
        completion_tokens=143,
    )
    run = Proposing(client, storage)
    view = StudyView(SPACE, "minimize", [], seed=0)
    with caplog.at_level(logging.DEBUG, logger="agent.proposers.llm"):
        run.proposer.propose(view, 1, [])  # a propose call with an invalid item, then its repair
        run.proposer.batch_size = 1
        run.proposer.propose(view, 2, [])  # the rest of the batch, a call with nothing valid, its repair fails
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    pattern = [
        r"model call propose: 2 of 3 candidates valid \(812\+143 tokens, \d+\.\d s\)",
        r"model call repair: the reply is not valid JSON \(.+\) \(812\+143 tokens, \d+\.\d s\)",
        r"model call propose: 0 of 1 candidates valid: candidate 1: x: 7.0 is above the maximum 1.0 \(812\+143",
    ]
    assert len(lines) == 3 and all(re.match(p, line) for p, line in zip(pattern, lines, strict=True)), lines
    assert "the model failed (server gone)" in caplog.text  # a call that got no reply says why, louder


def test_malformed_json_twice_falls_back_to_the_partner_and_rests_the_model(storage: SQLStorage) -> None:
    client = ScriptedClient(["I think x should be large!", "{not json", candidates({"x": 0.1, "n": 1, "c": "a"})])
    run = Proposing(client, storage)
    view = StudyView(SPACE, "minimize", [], seed=0)
    [fallback] = run.proposer.propose(view, 1, [])
    assert fallback.proposer == "random"
    assert [c.error is not None for c in run.calls] == [True, True]
    [rested] = run.proposer.propose(view, 1, [])  # the model rests for one proposal after a failure
    assert rested.proposer == "random" and len(client.requests) == 2
    [back] = run.proposer.propose(view, 1, [])
    assert back.proposer == "llm" and len(client.requests) == 3


def test_model_errors_are_recorded_by_the_gateway_and_never_raised(storage: SQLStorage) -> None:
    client = ScriptedClient([LLMError("server gone", attempts=4)])
    run = Proposing(client, storage)
    [proposal] = run.proposer.propose(StudyView(SPACE, "minimize", [], seed=0), 1, [])
    assert proposal.proposer == "random"
    [call] = run.calls  # recorded once, by the gateway
    assert call.error == "server gone" and call.attempts == 4 and call.reply is None


def test_a_budget_refusal_falls_back_quietly_without_a_call_or_a_rest(
    storage: SQLStorage, caplog: pytest.LogCaptureFixture
) -> None:
    client = ScriptedClient(default=candidates({"x": 0.5, "n": 2, "c": "a"}))
    run = Proposing(client, storage)
    view = StudyView(SPACE, "minimize", [], seed=0)
    run.gateway.budget = Budget(tokens=50)  # less than any prompt
    with caplog.at_level("WARNING"):
        picks = [run.proposer.propose(view, 1, [])[0].proposer for _ in range(3)]
    assert picks == ["random"] * 3 and client.requests == [] and run.calls == []
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    run.gateway.budget = None  # more budget: the model is asked at once, it was not rested
    assert run.proposer.propose(view, 1, [])[0].proposer == "llm"


def test_a_refused_repair_keeps_the_proposals_already_made(storage: SQLStorage) -> None:
    reply = candidates({"x": 0.5, "n": 2, "c": "a"}, {"x": 2.0, "n": 2, "c": "a"})  # one valid, one not
    client = ScriptedClient([reply], prompt_tokens=10, completion_tokens=10)
    run = Proposing(client, storage)
    view = StudyView(SPACE, "minimize", [], seed=0)
    prompt = estimate_prompt_tokens(run.proposer.messages(view, 2, []), batch_schema(SPACE, 2))
    run.gateway.budget = Budget(tokens=prompt + 60)  # room for the proposal, not for the longer repair
    [proposal] = run.proposer.propose(view, 1, [])
    assert proposal.proposer == "llm" and len(client.requests) == 1 and run.gateway.refused == "token budget"


def test_copies_of_past_and_pending_points_are_dropped(storage: SQLStorage) -> None:
    view = StudyView(SPACE, "minimize", make_trials(SPACE, [1.0]), seed=0)
    past = dict(view.trials[0].params)
    rounded_copy = {**past, "x": float(f"{past['x']:.6g}")}  # the history shows 6 digits; a model copies them
    pending = {"x": 0.3, "n": 3, "c": "a"}
    client = ScriptedClient([candidates(rounded_copy, pending, {"x": 0.7, "n": 7, "c": "b"})])
    [proposal] = Proposing(client, storage).proposer.propose(view, 1, [pending])
    assert proposal.params == {"x": 0.7, "n": 7, "c": "b"}


def test_near_miss_reply_shapes_are_read() -> None:
    single = {"x": 0.5, "n": 2, "c": "a"}
    assert read_candidates(SPACE, [single]).valid == [(single, None)]
    assert read_candidates(SPACE, single).valid == [(single, None)]
    assert read_candidates(SPACE, {"candidates": []}).problems == [
        "the candidates array is empty; propose at least one candidate"
    ]
    assert read_candidates(SPACE, "nope").problems == ['expected {"candidates": [...]}, a JSON array of candidates']
    schema = batch_schema(SPACE, 3)
    assert schema["properties"]["candidates"]["maxItems"] == 3
    assert schema["properties"]["candidates"]["items"]["properties"]["params"] == SPACE.json_schema()


def test_extract_json_from_prose_fences_and_pathological_text() -> None:
    assert extract_json('Sure! {"a": 1} bye') == {"a": 1}
    assert extract_json("```json\n[1, 2]\n```") == [1, 2]
    for bad in ("", "no json here", "{" * 200_000, "[1," * 5000):
        try:
            extract_json(bad)
        except ValueError:
            continue
        raise AssertionError(f"no error for {bad[:20]!r}")


def test_the_prompt_shows_the_space_history_best_last_and_pending(storage: SQLStorage) -> None:
    client = ScriptedClient([candidates({"x": 0.5, "n": 2, "c": "a"})])
    proposer = Proposing(client, storage).proposer
    view = StudyView(SPACE, "maximize", make_trials(SPACE, [0.2, 0.9, None, 0.5]), seed=0, context="toy task")
    proposer.propose(view, 1, [{"x": 0.3, "n": 3, "c": "a"}])
    system, user = client.requests[0].messages
    assert "raise the objective" in system["content"] and '"x": ...' in system["content"]
    text = user["content"]
    assert "Task: toy task" in text and "- n: integer in [1, 8]" in text
    lines = [line for line in text.splitlines() if line.startswith("#")]
    assert lines[0].endswith("FAILED (boom)") and lines[-1].endswith("-> 0.9")  # failures first, best last
    assert 'x=0.3, n=3, c="a"' in text and "beat the best so far (0.9)" in text


def test_history_of_a_long_study_stays_within_its_token_budget() -> None:
    space = Space(x=Float(0, 1), prompt=Text("p"))
    trials = make_trials(space, [float(i % 97) if i % 13 else None for i in range(2000)])
    long_text = [t.__class__(**{**t.__dict__, "params": {**t.params, "prompt": "word " * 400}}) for t in trials]
    view = StudyView(space, "minimize", long_text, seed=0)
    for budget in (300, 1500):
        text = render_history(view, max_tokens=budget)
        assert estimate_tokens(text) <= budget
        assert text.startswith("2000 trials so far")
    assert render_history(view, max_tokens=1500).splitlines()[-1].endswith("-> 0")


class FixedProposer:
    def __init__(self, name: str) -> None:
        self.name = name

    def propose(self, view: StudyView, n: int, pending: Sequence[Mapping]) -> list:
        return [p.__class__(p.params, self.name) for p in RandomProposer(len(pending)).propose(view, n, pending)]


def test_auto_without_a_model_is_bo_and_with_a_model_starts_zero_shot() -> None:
    view = StudyView(SPACE, "minimize", make_trials(SPACE, [1.0, 2.0]), seed=0)
    assert {p.proposer for p in AutoProposer(FixedProposer("bo")).propose(view, 3, [])} == {"bo"}
    auto = AutoProposer(FixedProposer("bo"), FixedProposer("llm"), seed=0, zero_shot=4)
    assert [p.proposer for p in auto.propose(view, 3, [])] == ["llm"] * 3


def test_the_bandit_favours_the_arm_that_improves() -> None:
    trials = make_trials(SPACE, [10.0 - i if i % 2 else 20.0 for i in range(20)])
    labelled = [t.__class__(**{**t.__dict__, "proposer": "llm" if t.number % 2 else "bo"}) for t in trials]
    view = StudyView(SPACE, "minimize", labelled, seed=1)
    counts = improvement_counts(view, ["llm", "bo"])
    assert counts["llm"][0] == 10 and counts["bo"] == (1, 9)
    auto = AutoProposer(FixedProposer("bo"), FixedProposer("llm"), seed=1, zero_shot=4)
    picks = [p.proposer for p in auto.propose(view, 20, [])]
    assert picks.count("llm") >= 15


def test_token_and_money_budgets_stop_the_study_within_them(tmp_path: Path) -> None:
    """Budgets are checked before each model call, so a study never spends past them (a 1500-token budget
    once stopped at 2,233 tokens, checked only after calls); the run stops once no call fits."""
    from agent import create_study

    study = create_study(
        "spend",
        SPACE,
        storage=f"sqlite:///{tmp_path / 's.db'}",
        proposer="llm",
        model=ScriptedClient(default=candidates({"x": 0.5, "n": 2, "c": "a"})),  # dropped as a copy after trial 0
        prices={"scripted": (1000.0, 1000.0)},  # $0.001 a token
        seed=0,
    )
    summary = study.optimize(lambda p: p["x"], budget=Budget(trials=50, tokens=1500))
    after_tokens = study.spend()
    assert summary.stopped_because == "token budget" and 0 < after_tokens.tokens <= 1500
    assert summary.trials_run < 50 and after_tokens.calls >= 2
    assert study.optimize(lambda p: p["x"], budget=Budget(trials=50, usd=2.0)).stopped_because == "money budget"
    assert after_tokens.usd < study.spend().usd <= 2.0
    assert not [t for t in study.trials if t.state.value == "running"]

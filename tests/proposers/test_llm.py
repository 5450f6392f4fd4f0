"""The llm proposer, history rendering and the auto portfolio, with a scripted model (unit level).

The real-model and real-HTTP tests are in tests/llm; these pin down edge cases a real model produces
only by chance: malformed JSON, invalid values, copies of past points, an empty answer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from agent.history import render_history
from agent.llm.client import Completion, LLMError, estimate_tokens, extract_json
from agent.proposers import StudyView
from agent.proposers.auto import AutoProposer, improvement_counts
from agent.proposers.llm import LLMProposer, batch_schema, read_candidates
from agent.proposers.random import RandomProposer
from agent.space import Categorical, Float, Int, Space, Text
from agent.storage import LLMCallRecord
from tests.proposers.conftest import make_trials

SPACE = Space(x=Float(0.0, 1.0), n=Int(1, 8), c=Categorical(["a", "b"]))


class ScriptedClient:
    """Replies with the given texts in order; an exception instance in the list is raised instead."""

    model = "scripted"

    def __init__(self, replies: Sequence[str | Exception]) -> None:
        self.replies = list(replies)
        self.requests: list[list[dict[str, str]]] = []

    def complete(
        self,
        messages: Sequence[Mapping[str, str]],
        schema: Any = None,
        temperature: float = 0.7,
        max_tokens: int = 1024,
    ) -> Completion:
        self.requests.append([dict(m) for m in messages])
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        try:
            parsed, error = extract_json(reply), None
        except ValueError as exc:
            parsed, error = None, str(exc)
        return Completion(reply, parsed, error, 10, 5, 0.01, self.model, mode="json_schema")


def candidates(*params: dict, rationale: str = "why not") -> str:
    return json.dumps({"candidates": [{"params": p, "rationale": rationale} for p in params]})


def proposer_with(client: ScriptedClient) -> tuple[LLMProposer, list[LLMCallRecord]]:
    calls: list[LLMCallRecord] = []

    def record(call: LLMCallRecord) -> int:
        calls.append(call)
        return len(calls)

    return LLMProposer(client, RandomProposer(0), record, batch_size=2), calls


def test_valid_candidates_are_used_with_their_rationale_and_call() -> None:
    client = ScriptedClient(
        [candidates({"x": 0.5, "n": 2, "c": "a"}, {"x": 0.25, "n": 3, "c": "b"}, rationale="near best")]
    )
    proposer, calls = proposer_with(client)
    view = StudyView(SPACE, "minimize", make_trials(SPACE, [1.0, 2.0]), seed=0)
    first = proposer.propose(view, 1, [])
    second = proposer.propose(view, 1, [first[0].params])  # served from the batch: no second call
    assert [p.params for p in first + second] == [{"x": 0.5, "n": 2, "c": "a"}, {"x": 0.25, "n": 3, "c": "b"}]
    assert all(p.proposer == "llm" and p.rationale == "near best" and p.llm_call_id == 1 for p in first + second)
    assert len(client.requests) == 1 and calls[0].purpose == "propose" and calls[0].prompt_tokens == 10


def test_invalid_items_get_one_repair_turn_quoting_the_errors() -> None:
    client = ScriptedClient(
        [
            candidates({"x": 1.5, "n": 2, "c": "a"}, {"x": 0.5, "n": 9, "c": "z"}),
            candidates({"x": 0.9, "n": 2, "c": "a"}),
        ]
    )
    proposer, calls = proposer_with(client)
    [proposal] = proposer.propose(StudyView(SPACE, "minimize", [], seed=0), 1, [])
    assert proposal.params == {"x": 0.9, "n": 2, "c": "a"} and proposal.llm_call_id == 2
    repair = client.requests[1][-1]["content"]
    for line in ("candidate 1: x: 1.5 is above the maximum 1.0", "candidate 2: n: 9 is above the maximum 8"):
        assert line in repair
    assert "candidate 2: c: 'z' is not one of 'a', 'b'" in repair
    assert client.requests[1][-2]["role"] == "assistant"
    assert [c.purpose for c in calls] == ["propose", "repair"]


def test_malformed_json_twice_falls_back_to_the_partner_and_rests_the_model() -> None:
    client = ScriptedClient(["I think x should be large!", "{not json", candidates({"x": 0.1, "n": 1, "c": "a"})])
    proposer, calls = proposer_with(client)
    view = StudyView(SPACE, "minimize", [], seed=0)
    [fallback] = proposer.propose(view, 1, [])
    assert fallback.proposer == "random"
    assert [c.error is not None for c in calls] == [True, True]
    [rested] = proposer.propose(view, 1, [])  # the model rests for one proposal after a failure
    assert rested.proposer == "random" and len(client.requests) == 2
    [back] = proposer.propose(view, 1, [])
    assert back.proposer == "llm" and len(client.requests) == 3


def test_model_errors_are_recorded_and_never_raised() -> None:
    client = ScriptedClient([LLMError("server gone", attempts=4)])
    proposer, calls = proposer_with(client)
    [proposal] = proposer.propose(StudyView(SPACE, "minimize", [], seed=0), 1, [])
    assert proposal.proposer == "random"
    assert calls[0].error == "server gone" and calls[0].attempts == 4 and calls[0].reply is None


def test_copies_of_past_and_pending_points_are_dropped() -> None:
    view = StudyView(SPACE, "minimize", make_trials(SPACE, [1.0]), seed=0)
    past = dict(view.trials[0].params)
    rounded_copy = {**past, "x": float(f"{past['x']:.6g}")}  # the history shows 6 digits; a model copies them
    pending = {"x": 0.3, "n": 3, "c": "a"}
    client = ScriptedClient([candidates(rounded_copy, pending, {"x": 0.7, "n": 7, "c": "b"})])
    proposer, _ = proposer_with(client)
    [proposal] = proposer.propose(view, 1, [pending])
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


def test_the_prompt_shows_the_space_history_best_last_and_pending() -> None:
    client = ScriptedClient([candidates({"x": 0.5, "n": 2, "c": "a"})])
    proposer, _ = proposer_with(client)
    view = StudyView(SPACE, "maximize", make_trials(SPACE, [0.2, 0.9, None, 0.5]), seed=0, context="toy task")
    proposer.propose(view, 1, [{"x": 0.3, "n": 3, "c": "a"}])
    system, user = client.requests[0]
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


def test_token_and_money_budgets_stop_the_study_cleanly(tmp_path) -> None:
    from agent import Budget, create_study

    reply = candidates({"x": 0.5, "n": 2, "c": "a"})
    study = create_study(
        "spend",
        SPACE,
        storage=f"sqlite:///{tmp_path / 's.db'}",
        proposer="llm",
        model=ScriptedClient([reply] * 50),
        prices={"scripted": (1_000_000.0, 0.0)},  # $10 per 10-token call
        seed=0,
    )
    summary = study.optimize(lambda p: p["x"], budget=Budget(trials=20, tokens=40))
    assert summary.stopped_because == "token budget" and study.spend().tokens >= 40
    assert study.spend().tokens == 45 and study.spend().usd == 30.0  # three 15-token calls at $10
    assert study.optimize(lambda p: p["x"], budget=Budget(trials=20, usd=25.0)).stopped_because == "money budget"
    assert not [t for t in study.trials if t.state.value == "running"]

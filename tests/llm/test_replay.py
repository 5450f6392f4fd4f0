"""Replay: a study recorded against a real HTTP model replays to identical proposals without it."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import Categorical, Float, Int, Space, create_study
from agent.llm import LLMError, make_client
from agent.llm.openai import OpenAIClient
from agent.storage import SQLStorage
from agent.testing.misbehaving_server import MisbehavingServer, ok, reply_from_schema, status

SPACE = Space(x=Float(-2.0, 2.0), n=Int(1, 6), c=Categorical(["p", "q", "r"]))


def objective(p: dict) -> float:
    return (p["x"] - 0.7) ** 2 + abs(p["n"] - 4) + (p["c"] != "q")


@pytest.mark.slow
def test_a_recorded_study_replays_to_identical_proposals(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'replay.db'}"
    with MisbehavingServer([status(500)], default=ok(reply_from_schema(seed=3))) as server:
        client = OpenAIClient("recorded", base_url=server.base_url, max_attempts=2, backoff_s=0.01)
        recorded = create_study("recorded", SPACE, storage=url, proposer="auto", model=client, seed=5)
        recorded.optimize(objective, n_trials=14)
    # The server is gone: the replay needs no model at all.
    replayed = create_study("replayed", SPACE, storage=url, proposer="auto", model="replay:recorded", seed=5)
    replayed.optimize(objective, n_trials=14)

    first, second = recorded.trials, replayed.trials
    assert [t.params for t in first] == [t.params for t in second]
    assert [t.proposer for t in first] == [t.proposer for t in second]
    assert {t.proposer for t in first} == {"llm", "bo"}
    assert len(replayed.llm_calls) == len(recorded.llm_calls)


def test_replay_errors_are_clear(tmp_path: Path) -> None:
    storage = SQLStorage(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(ValueError, match="needs the storage"):
        make_client("replay:x")
    with pytest.raises(LLMError, match="no study named 'x'"):
        make_client("replay:x", storage)
    create_study("silent", SPACE, storage=storage, proposer="bo")
    with pytest.raises(LLMError, match="has no recorded model calls"):
        make_client("replay:silent", storage)

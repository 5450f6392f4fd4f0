"""Chat's model: what it is shown, how its proposals are read, and how it falls back from tool calls to JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import agent
from agent import Float, Int, Space
from agent.interact.actions import ACTIONS
from agent.interact.assistant import Assistant
from agent.interact.session import Session
from agent.llm.client import LLMError
from agent.llm.replay import ReplayClient
from agent.testing.misbehaving_server import MisbehavingServer, ok, reject_tools, status, tool_calls
from agent.testing.scripted import ScriptedClient

SPACE = Space(x=Float(-2.0, 2.0), n=Int(1, 8))


@pytest.fixture
def session(tmp_path: Path) -> Session:
    study = agent.create_study("s", SPACE, storage=f"sqlite:///{tmp_path / 'study.db'}", proposer="random", seed=0)
    study.optimize(lambda p: p["x"] ** 2 + p["n"], n_trials=3)
    return Session(study, "chat", folder=tmp_path)


def test_a_backend_without_tools_is_held_to_the_json_action_format(session: Session) -> None:
    reply = json.dumps(
        {
            "reply": "Narrow x; trial 2 looks good.",
            "actions": [
                {"name": "narrow", "arguments": {"param": "x", "low": -1, "high": 1}},
                {"name": "explode", "arguments": {}},
                {"name": "fix", "arguments": {"param": "n"}},
                {"name": "status", "arguments": "now"},
            ],
        }
    )
    client = ScriptedClient([reply])
    assistant = Assistant(session, session.study.task_gateway(client))
    answer = assistant.ask("what should I do?")
    assert answer.text == "Narrow x; trial 2 looks good."
    assert [str(p) for p in answer.actions] == ["narrow(param='x', low=-1.0, high=1.0)"]
    assert answer.problems == [
        "the model proposed an action that cannot be done: 'explode' is not an action (actions: status, best, "
        "trials, show, space, narrow, fix, free, add_choice, remove_choice, enqueue, note, undo, report, run)",
        "the model proposed an action that cannot be done: fix: value: missing",
        "the model proposed an action that cannot be done: status: its arguments 'now' are not a JSON object",
    ]
    [request] = client.requests
    assert request.schema is not None and request.schema["required"] == ["reply", "actions"]
    system = request.messages[0]["content"]
    assert "Answer with JSON only" in system and "- narrow: search a float or int parameter" in system
    assert "s (minimize): 3 trials (3 complete)" in system and "x: float in [-2.0, 2.0]" in system
    assert request.messages[-1] == {"role": "user", "content": "what should I do?"}


def test_the_conversation_carries_what_happened_and_earlier_turns(session: Session) -> None:
    client = ScriptedClient(['{"reply": "first", "actions": []}', "not json at all"])
    assistant = Assistant(session, session.study.task_gateway(client))
    assistant.ask("hello")
    assistant.record("The person ran /narrow x 0 1: Done.")
    second = assistant.ask("and now?")
    assert second.text == "not json at all" and "could not be read" in second.problems[0]
    messages = client.requests[1].messages
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[2]["content"] == "first"
    assert messages[3]["content"] == "(Since your last reply: The person ran /narrow x 0 1: Done.)\nand now?"


def test_a_server_that_refuses_tools_is_asked_for_json_from_then_on(session: Session) -> None:
    answer = json.dumps({"reply": "ok", "actions": [{"name": "note", "arguments": {"text": "n=1 is best"}}]})
    with MisbehavingServer([reject_tools(), ok(answer), ok(answer)]) as server:
        assistant = Assistant(session, session.study.task_gateway(server.spec()))
        assert assistant.use_tools
        first = assistant.ask("note it")
        assistant.ask("again")
        requests = server.requests
    assert [str(p) for p in first.actions] == ["note(text='n=1 is best')"]
    assert not assistant.use_tools
    assert ["tools" in r.body for r in requests] == [True, False, False]
    assert "Answer with JSON only" in requests[1].messages[0]["content"]


def test_no_reply_is_an_llm_error_and_the_calls_are_recorded_as_chat_not_replayed(session: Session) -> None:
    with MisbehavingServer([tool_calls([("best", {})], content="Here."), status(401)]) as server:
        assistant = Assistant(session, session.study.task_gateway(server.spec()))
        assert [str(p) for p in assistant.ask("best?").actions] == ["best()"]
        with pytest.raises(LLMError):
            assistant.ask("again")
    calls = session.study.llm_calls
    assert [(c.purpose, c.mode, c.error is None) for c in calls] == [("chat", "tools", True), ("chat", None, False)]
    assert session.study.llm_calls[0].parsed == {"reply": "Here.", "actions": [{"name": "best", "arguments": {}}]}
    summary = ACTIONS["status"].perform(session, ACTIONS["status"].parse("")).text
    assert "Model calls (chat, task model): 2 calls (1 failed" in summary  # the study itself has no model
    with pytest.raises(LLMError, match="no recorded model calls"):
        ReplayClient(session.study.storage, "s")  # a chat is not part of a run to reproduce

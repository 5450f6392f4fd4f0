"""Chat's model: it reads the study as a person sees it, answers, and proposes actions for them to confirm.

The model is offered the same actions as the slash commands (:data:`agent.interact.actions.ACTIONS`): as
functions where the backend has OpenAI-style tool calling, else as a JSON reply format (``{"reply",
"actions"}``), which every backend can be held to with a schema. Either way its proposals come back as
:class:`Proposed` actions with validated arguments; the chat shows each and asks before doing it. A proposal
that cannot be read (an unknown action, bad arguments) is reported, never guessed at.

Calls go through the study's model gateway (purpose ``"chat"``), so they are recorded, priced and counted
like the optimizer's, and left out of a replay of the study.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent.interact.actions import ACTIONS, Action, Arguments, NoArguments
from agent.interact.session import Session, SessionError
from agent.llm.client import Completion, LLMError
from agent.llm.replay import CHAT_PURPOSE

if TYPE_CHECKING:
    from agent.llm.gateway import ModelGateway

log = logging.getLogger(__name__)

#: Turns of the conversation sent back to the model (each a person's message and the model's reply).
HISTORY_TURNS = 8
#: Trials shown to the model each turn; more are one ``trials`` or ``show`` action away.
TRIALS_SHOWN = 10
REPLY_TOKENS = 500
#: Actions one reply may propose.
MAX_ACTIONS = 3


@dataclass(frozen=True)
class Proposed:
    """An action the model proposed, with arguments that passed validation."""

    action: Action
    arguments: Arguments

    def __str__(self) -> str:
        given = self.arguments.model_dump(exclude_defaults=True)
        return f"{self.action.name}({', '.join(f'{k}={v!r}' for k, v in given.items())})"


@dataclass(frozen=True)
class Reply:
    """What the model said, the actions it proposed, and the proposals that could not be read."""

    text: str
    actions: list[Proposed] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class Assistant:
    """A conversation with the study's model about one open study."""

    def __init__(self, session: Session, gateway: ModelGateway) -> None:
        self.session = session
        self.gateway = gateway
        self.use_tools = gateway.supports_tools
        self._turns: list[tuple[str, str]] = []
        self._since: list[str] = []  # what happened since the last message (actions done or declined)

    def record(self, line: str) -> None:
        """Tell the model, with the next message, what happened (an action done or declined, a command run)."""
        self._since.append(line)

    def ask(self, message: str) -> Reply:
        """The model's answer to ``message``, with the study's current state.

        Raises:
            LLMError: no reply could be had (the message says why); the conversation is unchanged.
        """
        said = message if not self._since else "(Since your last reply: " + " ".join(self._since) + ")\n" + message
        messages = [{"role": "system", "content": self._system()}]
        for person, model in self._turns[-HISTORY_TURNS:]:
            messages += [{"role": "user", "content": person}, {"role": "assistant", "content": model}]
        messages.append({"role": "user", "content": said})
        completion = self._complete(messages)
        reply = self._read(completion.parsed, completion.text, completion.parse_error)
        self._since.clear()
        proposed = "".join(f"\n[proposed: {p}]" for p in reply.actions)
        self._turns.append((said, reply.text + proposed))
        return reply

    def _complete(self, messages: list[dict[str, str]]) -> Completion:
        """One call: with the actions as tools where the backend takes them (once refused, never again), else
        with the JSON reply schema."""
        if self.use_tools:
            tools = [{"name": a.name, "description": a.summary, "parameters": a.schema} for a in ACTIONS.values()]
            try:
                return self.gateway.complete(
                    messages, purpose=CHAT_PURPOSE, tools=tools, max_tokens=REPLY_TOKENS, temperature=0.2
                )
            except LLMError as exc:
                if "tool" not in str(exc).lower():
                    raise
                log.warning("%s refused tool calling (%s); asking for JSON actions instead", self.gateway.model, exc)
                self.use_tools = False
                messages = [{"role": "system", "content": self._system()}, *messages[1:]]
        return self.gateway.complete(
            messages, _reply_schema(), purpose=CHAT_PURPOSE, max_tokens=REPLY_TOKENS, temperature=0.2
        )

    def _system(self) -> str:
        from prompts import render

        return render(
            "chat_system.j2",
            tools=self.use_tools,
            actions=[{"name": a.name, "summary": a.summary, "arguments": _argument_list(a)} for a in ACTIONS.values()],
            state=study_state(self.session),
        )

    def _read(self, parsed: Any, text: str, parse_error: str | None) -> Reply:
        if not isinstance(parsed, Mapping):
            why = parse_error or "it was not a JSON object"
            return Reply(text.strip() or "(no answer)", problems=[f"the model's reply could not be read ({why})"])
        reply = parsed.get("reply")
        actions, problems = [], []
        raw_actions = parsed.get("actions")
        for raw in raw_actions if isinstance(raw_actions, list) else []:
            try:
                actions.append(_proposed(raw))
            except SessionError as exc:
                problems.append(f"the model proposed an action that cannot be done: {exc}")
        return Reply(reply.strip() if isinstance(reply, str) else "", actions, problems)


def study_state(session: Session) -> str:
    """The study as the model is shown it each turn: compact lines, not the tables a person reads (their box
    drawing costs a small local model most of its context and seconds of prompt processing per turn)."""
    from agent.display import number, short_params, trial_line
    from agent.summary import summarize

    study = session.study
    s = summarize(study)
    states = ", ".join(f"{n} {state}" for state, n in s["states"].items() if n) or "none yet"
    target = f", {s['metric']}" if s["metric"] else ""
    lines = [f"Study {s['name']} ({s['direction']}{target}): {s['trials']} trials ({states})."]
    if s["best"]:
        best = s["best"]
        lines.append(
            f"Best: trial {best['number']}, value {number(best['value'])} ({best['proposer']}): "
            f"{short_params(best['params'], limit=400)}"
        )
    lines.append(ACTIONS["space"].perform(session, NoArguments()).text.strip())
    latest = study.trials[-TRIALS_SHOWN:]
    if latest:
        lines.append(f"The latest {len(latest)} trials:")
        lines += [trial_line(t) for t in latest]
    return "\n".join(lines)


def _proposed(raw: Any) -> Proposed:
    if not isinstance(raw, Mapping):
        raise SessionError(f"{raw!r} is not an action")
    name = raw.get("name")
    action = ACTIONS.get(name) if isinstance(name, str) else None
    if action is None:
        raise SessionError(f"{name!r} is not an action (actions: {', '.join(ACTIONS)})")
    arguments = raw.get("arguments", {})
    if not isinstance(arguments, Mapping):
        raise SessionError(f"{name}: its arguments {str(arguments)[:80]!r} are not a JSON object")
    return Proposed(action, action.validate(arguments))


def _argument_list(action: Action) -> str:
    """``{"param": string, "low": number}``: an action's arguments in a line the model reads."""
    fields = action.schema.get("properties", {})
    if not fields:
        return "none"
    return json.dumps({name: f.get("description", f.get("type", "")) for name, f in fields.items()})


def _reply_schema() -> dict[str, Any]:
    """The JSON a backend without tool calling answers with: each action's arguments held to that action's own
    schema, so a grammar-constrained model cannot invent keys, and at most :data:`MAX_ACTIONS` of them."""
    choices = [
        {
            "type": "object",
            "properties": {"name": {"const": action.name}, "arguments": _bare(action.schema)},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for action in ACTIONS.values()
    ]
    return {
        "type": "object",
        "properties": {
            "reply": {"type": "string"},
            "actions": {"type": "array", "items": {"anyOf": choices}, "maxItems": MAX_ACTIONS},
        },
        "required": ["reply", "actions"],
        "additionalProperties": False,
    }


def _bare(schema: Mapping[str, Any]) -> dict[str, Any]:
    """``schema`` without pydantic's titles: noise in a prompt, and words a grammar need not hold."""
    return {
        key: _bare(value) if isinstance(value, Mapping) else value
        for key, value in schema.items()
        if key != "title" or not isinstance(value, str)
    }

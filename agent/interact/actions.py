"""What a person or an assistant can do to an open study, once: chat's slash commands, the tools chat's model
may call, and the MCP server's tools are all this one table.

Each :class:`Action` has a pydantic model of its arguments (their JSON Schema is what a model's tool call
and an MCP client are given, and what validates them), a slash-command syntax for typing them, and a
function returning an :class:`Outcome`: the text a person or a model reads, and the same as JSON data.
The text comes from the views ``status``, ``trials`` and ``show`` print, so every surface shows the same.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.interact.boundary import MAX_PATH
from agent.interact.session import Session, SessionError

if TYPE_CHECKING:
    from agent.trial import Trial

ModelT = TypeVar("ModelT", bound=BaseModel)

#: A parameter's value as typed or sent: a number, a bool, or a string (a choice, a prompt, a program).
Value = bool | int | float | str

#: How a slash command's text after the name becomes arguments: ``words`` fill the fields in order;
#: ``rest`` is all of it for the one field; ``assign`` is ``PARAM=VALUE``; ``json`` is one JSON object.
Syntax = Literal["words", "rest", "assign", "json"]


class Arguments(BaseModel):
    """The arguments of an action; unknown keys are refused, so a misspelt one is named rather than ignored."""

    model_config = ConfigDict(extra="forbid")


class NoArguments(Arguments):
    pass


class TrialsArguments(Arguments):
    last: int | None = Field(None, ge=1, description="only the last K trials (all when left out)")


class ShowArguments(Arguments):
    number: int = Field(ge=0, description="the trial's number")


class NarrowArguments(Arguments):
    param: str = Field(description="a float or int parameter")
    low: float = Field(description="the new lower bound, inside the study's range")
    high: float = Field(description="the new upper bound, inside the study's range")


class PinArguments(Arguments):
    param: str = Field(description="the parameter")
    value: Value = Field(description="its value")


class ParamArguments(Arguments):
    param: str = Field(description="the parameter")


class EnqueueArguments(Arguments):
    params: dict[str, Value] = Field(description="a point to evaluate next: {parameter: value}")


class NoteArguments(Arguments):
    text: str = Field(min_length=1, description="what the optimizer should know, in a sentence")


class ReportArguments(Arguments):
    path: str = Field("report.html", max_length=MAX_PATH, description="the HTML file to write")


class RunArguments(Arguments):
    trials: int = Field(ge=1, le=1000, description="how many more trials to run")


@dataclass(frozen=True)
class Outcome:
    """What an action did: ``text`` to read (a person, a model), ``data`` for a program (MCP's structured result)."""

    text: str
    data: Any = None


@dataclass(frozen=True)
class Action:
    """One thing that can be done to a study.

    Attributes:
        name: the slash command and the tool name.
        summary: one line for ``/help`` and the tool's description.
        arguments: the model of its arguments.
        perform: the action itself.
        syntax: how the slash command's text is read (see :data:`Syntax`).
        usage: the slash command as ``/help`` shows it.
        changes: whether it changes the study or writes a file: a model's call of it is shown and confirmed first.
    """

    name: str
    summary: str
    arguments: type[Arguments]
    perform: Callable[[Session, Any], Outcome]
    syntax: Syntax = "words"
    usage: str = ""
    changes: bool = False

    def __post_init__(self) -> None:
        if not self.usage:  # an action without arguments is typed as its bare name
            object.__setattr__(self, "usage", f"/{self.name}")

    def parse(self, text: str) -> Arguments:
        """The arguments typed after ``/name``; :class:`SessionError` with the usage when they do not fit."""
        fields = list(self.arguments.model_fields)
        try:
            raw = _read(self.syntax, text, fields)
            return self.arguments.model_validate(raw)
        except (ValueError, ValidationError) as exc:
            raise SessionError(f"{problem_text(exc)}; usage: {self.usage}") from None

    def validate(self, raw: Mapping[str, Any]) -> Arguments:
        """Arguments sent as JSON (a model's tool call, an MCP client); :class:`SessionError` naming the field."""
        return validated(self.arguments, raw, self.name)

    @property
    def schema(self) -> dict[str, Any]:
        """The JSON Schema of the arguments, for a tool definition."""
        return self.arguments.model_json_schema()


def validated(model: type[ModelT], raw: Mapping[str, Any], name: str) -> ModelT:
    """``raw`` as ``model``, or a :class:`SessionError` saying, after ``name``, what is wrong with each field."""
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        raise SessionError(f"{name}: {problem_text(exc)}") from None


def _read(syntax: Syntax, text: str, fields: list[str]) -> dict[str, Any]:
    text = text.strip()
    if syntax == "rest":
        return {fields[0]: text} if text else {}
    if syntax == "json":
        if not text:
            return {}
        value = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError('expected a JSON object such as {"lr": 0.01}')
        return {fields[0]: value}
    if syntax == "assign":
        name, sep, value = text.partition("=")
        if not sep or not name.strip():
            raise ValueError("expected PARAM=VALUE")
        return {fields[0]: name.strip(), fields[1]: _scalar(value.strip())}
    words = shlex.split(text)
    if len(words) > len(fields):
        raise ValueError(f"expected at most {len(fields)} values, got {len(words)}")
    return {field: _scalar(word) for field, word in zip(fields, words, strict=False)}


def _scalar(word: str) -> Any:
    """A typed value as what it looks like: ``0.01`` a number, ``true`` a bool, ``adam`` (or ``"0.01"``) a string."""
    try:
        value = json.loads(word)
    except ValueError:
        return word
    return value if isinstance(value, bool | int | float | str) else word


def problem_text(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'arguments'}: "
            + ("missing" if error["type"] == "missing" else error["msg"])
            for error in exc.errors()
        )
    return str(exc)


# What the actions do --------------------------------------------------------------------------------------


def _status(session: Session, _: NoArguments) -> Outcome:
    from agent.cli.common import captured
    from agent.cli.views import print_summary
    from agent.summary import summarize

    with captured() as text:
        print_summary(session.study, None)
    return Outcome(text[0], summarize(session.study))


def _best(session: Session, _: NoArguments) -> Outcome:
    from agent.cli.views import trial_record
    from agent.display import number, value_text

    study = session.study
    try:
        best = study.best_trial
    except ValueError as exc:
        raise SessionError(str(exc)) from None
    lines = [f"Best trial #{best.number}: {study.metric or 'value'} {number(best.value)} ({best.proposer})"]
    lines += [f"  {name} = {value_text(value)}" for name, value in best.params.items()]
    return Outcome("\n".join(lines) + "\n", trial_record(best))


def _trials(session: Session, args: TrialsArguments) -> Outcome:
    from agent.cli.common import captured
    from agent.cli.views import print_trials, trial_record

    trials = session.study.trials
    chosen = trials[-args.last :] if args.last else trials
    if not chosen:
        return Outcome(f"{session.study.name}: no trials yet.\n", [])
    with captured() as text:
        print_trials(session.study, chosen)
    return Outcome(text[0], [trial_record(t) for t in chosen])


def _show(session: Session, args: ShowArguments) -> Outcome:
    from agent.cli.common import captured
    from agent.cli.views import call_record, print_trial, producing_call, trial_record

    study = session.study
    trial = next((t for t in study.trials if t.number == args.number), None)
    if trial is None:
        count = len(study.trials)
        known = f"its trials are numbered 0 to {count - 1}" if count else "it has no trials yet"
        raise SessionError(f"study {study.name!r} has no trial {args.number} ({known})")
    call = producing_call(study, trial)
    with captured() as text:
        print_trial(study, trial, call)
    return Outcome(text[0], {**trial_record(trial), "model_call": None if call is None else call_record(call)})


def _space(session: Session, _: NoArguments) -> Outcome:
    steering = session.study.steering
    lines = [f"Search space of {session.study.name}:"]
    for name, param in steering.space.items():
        stored = session.study.space[name]
        if name in steering.pinned:
            state = f"pinned at {steering.pinned[name]!r}"
        elif param != stored:
            state = f"{param.describe()} (steered; stored: {stored.describe()})"
        else:
            state = param.describe()
        lines.append(f"  {name}: {state}")
    lines += [f"Note: {note}" for note in steering.notes]
    data = {"space": steering.space.to_dict(), "pinned": steering.pinned, "notes": list(steering.notes)}
    return Outcome("\n".join(lines) + "\n", data)


def _steered(session: Session, kind: str, event_of: Callable[[], Any]) -> Outcome:
    from agent.steering import describe, event_record

    event = event_of()
    return Outcome(f"Done: {describe(kind, event.payload)}. Proposals follow it from now on.\n", event_record(event))


def _narrow(session: Session, args: NarrowArguments) -> Outcome:
    low, high = _as_declared(session, args.param, args.low), _as_declared(session, args.param, args.high)
    return _steered(session, "narrow", lambda: session.study.narrow(args.param, low, high, author=session.author))


def _as_declared(session: Session, param: str, bound: float) -> float:
    """A bound typed as ``8`` for an int parameter is the int 8 (JSON makes every number a float here)."""
    from agent.space import Int

    declared = session.study.space.get(param)
    return int(bound) if isinstance(declared, Int) and float(bound).is_integer() else bound


def _fix(session: Session, args: PinArguments) -> Outcome:
    return _steered(session, "fix", lambda: session.study.fix(args.param, args.value, author=session.author))


def _free(session: Session, args: ParamArguments) -> Outcome:
    return _steered(session, "free", lambda: session.study.free(args.param, author=session.author))


def _add_choice(session: Session, args: PinArguments) -> Outcome:
    return _steered(session, "add_choice", lambda: session.study.add_choice(args.param, args.value, session.author))


def _remove_choice(session: Session, args: PinArguments) -> Outcome:
    study = session.study
    return _steered(session, "remove_choice", lambda: study.remove_choice(args.param, args.value, session.author))


def _note(session: Session, args: NoteArguments) -> Outcome:
    return _steered(session, "note", lambda: session.study.note(args.text, author=session.author))


def _undo(session: Session, _: NoArguments) -> Outcome:
    from agent.steering import describe, event_record

    event = session.study.undo()
    if event is None:
        return Outcome("Nothing to undo: no steering is in force.\n")
    return Outcome(f"Undone: {describe(event.kind, event.payload)}.\n", event_record(event))


def _enqueue(session: Session, args: EnqueueArguments) -> Outcome:
    from agent.display import short_params

    session.study.enqueue(args.params)
    waiting = session.study.queued
    return Outcome(
        f"Enqueued {short_params(args.params)}: it runs before any proposal ({waiting} waiting).\n",
        {"params": args.params, "queued": waiting},
    )


def _report(session: Session, args: ReportArguments) -> Outcome:
    from agent.cli.report import write_report

    path = session.resolve(args.path)
    return Outcome(write_report(session.study, path) + "\n", {"path": str(path)})


def _run(session: Session, args: RunArguments) -> Outcome:
    from agent.display import number, trial_line

    lines: list[str] = []

    def seen(trial: Trial) -> None:
        if session.on_trial is not None:  # shown as it was recorded: not repeated in the text
            session.on_trial(trial)
        else:
            lines.append(trial_line(trial))

    summary = session.run(args.trials, seen)
    study = session.study
    try:
        best = f"best: trial {study.best_trial.number}, {number(study.best_value)}"
    except ValueError:
        best = "no complete trial yet"
    lines.append(f"Ran {summary.trials_run} trials (stopped: {summary.stopped_because}); {best}.")
    return Outcome("\n".join(lines) + "\n", {"trials": summary.trials_run, "stopped": str(summary.stopped_because)})


ACTIONS: dict[str, Action] = {
    action.name: action
    for action in (
        Action("status", "the study: counts, spend, the best trial, the proposer mix, steering", NoArguments, _status),
        Action("best", "the best trial and its parameters", NoArguments, _best),
        Action("trials", "the trials, one row each (the last K)", TrialsArguments, _trials, usage="/trials [K]"),
        Action("show", "one trial in full, with the model call behind it", ShowArguments, _show, usage="/show N"),
        Action("space", "the search space as steering leaves it: narrowed ranges, pins, notes", NoArguments, _space),
        Action(
            "narrow",
            "search a float or int parameter only in [low, high]",
            NarrowArguments,
            _narrow,
            usage="/narrow PARAM LOW HIGH",
            changes=True,
        ),
        Action(
            "fix", "pin a parameter at a value", PinArguments, _fix, "assign", usage="/fix PARAM=VALUE", changes=True
        ),
        Action("free", "search a pinned parameter again", ParamArguments, _free, usage="/free PARAM", changes=True),
        Action(
            "add_choice",
            "offer one more choice for a categorical parameter",
            PinArguments,
            _add_choice,
            "assign",
            usage="/add_choice PARAM=VALUE",
            changes=True,
        ),
        Action(
            "remove_choice",
            "stop proposing one choice of a categorical parameter",
            PinArguments,
            _remove_choice,
            "assign",
            usage="/remove_choice PARAM=VALUE",
            changes=True,
        ),
        Action(
            "enqueue",
            "evaluate a given point before any proposal",
            EnqueueArguments,
            _enqueue,
            "json",
            usage='/enqueue {"PARAM": VALUE, ...}',
            changes=True,
        ),
        Action(
            "note",
            "tell the optimizer something (shown to the model in every proposal)",
            NoteArguments,
            _note,
            "rest",
            usage="/note TEXT",
            changes=True,
        ),
        Action("undo", "undo the newest steering still in force", NoArguments, _undo, changes=True),
        Action(
            "report",
            "write the study's HTML report (plots that work offline)",
            ReportArguments,
            _report,
            usage="/report [PATH]",
            changes=True,
        ),
        Action(
            "run",
            "run N more trials with the job's objective: it runs the job's command (or function) on this host",
            RunArguments,
            _run,
            usage="/run N",
            changes=True,
        ),
    )
}

"""``tunesmith mcp``: studies served to a chat assistant over the Model Context Protocol, on stdin and stdout.

The tools are the actions of :mod:`agent.interact.actions` (``status``, ``narrow``, ``run_trials``...), each
taking the ``study`` it acts on, and what only a program holding studies needs: ``list_studies``,
``create_study``, ``load_study``, ``ask`` for a point and ``tell`` its result. A tool's input schema is its
arguments' pydantic model, so the SDK's low-level server is used: it lists those schemas as they are, where
the decorator API would derive them from Python signatures.

Three rules keep the assistant's side of the pipe sound:

- stdin and stdout are the protocol's. Messages come in on a duplicate of fd 0 and go out on a duplicate of
  fd 1; for the life of the server fd 0 reads nothing and fd 1 points at stderr: an objective that prints, a
  library's progress line, a child process all land there, and none can read the client's messages.
- a call that fails is a tool error the model can read and act on: the message, never a traceback. Only an
  unexpected exception is logged with its traceback (to stderr), and reported as ``internal error: ...``.
- what a client names is checked against what the server's command line allows (:mod:`agent.interact.boundary`):
  a client, being a model that reads text others wrote, is not trusted to choose what runs or what is written.

Tools run in worker threads (an objective may take minutes; the server keeps answering), one call at a time
per study: a study's session (its evaluator, its steering) is not meant to be driven by two calls at once.
When the client goes (its end of input closes, a write to it fails) or the server gets SIGTERM, the calls
running are interrupted as ``tunesmith run`` is by Ctrl-C (:mod:`agent.interact.interrupt`): their running
trials marked interrupted, their processes killed, before the server exits.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal, cast

import anyio
from mcp import types
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server
from pydantic import BaseModel, Field, create_model

from agent import __version__
from agent.errors import TunesmithError
from agent.interact.actions import ACTIONS, Action, Arguments, NoArguments, Outcome, ReportArguments, validated
from agent.interact.boundary import MAX_PATH, Boundary
from agent.interact.interrupt import Calls
from agent.interact.session import Session, SessionError
from agent.secrets import redact, without_credentials

log = logging.getLogger(__name__)

#: Recorded with every steering event made through the server.
AUTHOR = "mcp"

#: Tool names that say more than the action's, among the tools of every server an assistant holds.
_TOOL_NAMES = {"run": "run_trials", "show": "show_trial"}
#: The longest study name a client may send: a name is a label, and an error message quotes it.
MAX_NAME = 1000
#: How long the calls interrupted at SIGTERM may take to mark their trials: the MCP client that sends SIGTERM
#: (after closing the pipe and waiting 2 s) sends SIGKILL 2 s later.
_STOP_WITHIN_S = 1.5
#: The longest message read whole (characters): a longer line is read in pieces that each fail to parse, so a
#: client cannot grow the server without bound.
_MAX_LINE = 16 * 1024 * 1024

_INSTRUCTIONS = """\
tunesmith optimizes parameters: it proposes points, someone evaluates them, it learns from the results.
Open a study first: load_study with a job file (then run_trials evaluates points with the job's objective:
it runs the job's command on this host), or create_study with a search space (then you evaluate: ask for a
point, tell its result). Only the job files the server was started with (or under its --allow-jobs folders)
can be loaded, and files are written only inside the server's folder. list_studies shows what is stored.
status, best and trials show progress; narrow, fix, free, add_choice, remove_choice, enqueue and note steer
the search; undo takes back the last steering; report writes an HTML page."""


# Arguments of the tools that are not in the actions' table -----------------------------------------------


#: A client's storage argument: a SQLite file inside the server's folder, or the server's own storage.
_STORAGE = "a SQLite file inside the server's folder, or the server's own storage URL (the default)"


class ListArguments(Arguments):
    storage: str | None = Field(None, max_length=MAX_PATH, description=_STORAGE)


class CreateArguments(Arguments):
    name: str = Field(min_length=1, max_length=MAX_NAME, description="the study's name, unique in its storage")
    space: dict[str, Any] = Field(
        description="the parameters, as a job file's [space] table: "
        '{"lr": {"type": "float", "low": 1e-5, "high": 0.1, "log": true}, "depth": {"type": "int", "low": 1, '
        '"high": 8}, "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]}}'
    )
    direction: Literal["minimize", "maximize"] = Field("minimize", description="whether lower or higher is better")
    metric: str | None = Field(None, description="the target, when results are told as a dict of metrics")
    seed: int | None = Field(None, description="makes the proposals reproducible")
    storage: str | None = Field(None, max_length=MAX_PATH, description=_STORAGE)
    load_if_exists: bool = Field(
        False, description="open the stored study of that name (same space, direction, metric) instead of failing"
    )


class LoadArguments(Arguments):
    job: str | None = Field(
        None,
        max_length=MAX_PATH,
        description="a job file's path (absolute, or from the server's folder), one the server was started with "
        "or under its --allow-jobs folders: its study, created on first use, can run trials with the job's "
        "objective (its command runs on this host)",
    )
    name: str | None = Field(
        None, max_length=MAX_NAME, description="instead of job: a stored study's name (it cannot run trials)"
    )
    storage: str | None = Field(None, max_length=MAX_PATH, description=f"with name: {_STORAGE}")


class TellArguments(Arguments):
    number: int = Field(ge=0, description="the trial's number, as ask gave it")
    value: float | None = Field(None, description="the objective's value at the trial's point")
    metrics: dict[str, float] | None = Field(
        None, description="instead of value: several measurements, the study's metric among them"
    )
    error: str | None = Field(None, description="instead of value: why the evaluation failed (recorded as failed)")


def _ask(session: Session, _: NoArguments) -> Outcome:
    trial = session.study.ask()
    params = dict(trial.params)
    return Outcome(
        f"Trial {trial.number}: evaluate {json.dumps(params)}, then tell its result "
        f"(study {session.study.name!r}, number {trial.number}).\n",
        {"number": trial.number, "params": params},
    )


def _tell(session: Session, args: TellArguments) -> Outcome:
    from agent.cli.views import trial_record
    from agent.display import trial_line

    if sum(given is not None for given in (args.value, args.metrics, args.error)) != 1:
        raise SessionError("tell: give exactly one of value, metrics or error")
    if args.error is not None:
        trial = session.study.tell(args.number, state="failed", error=args.error)
    else:
        trial = session.study.tell(args.number, args.value if args.metrics is None else args.metrics)
    return Outcome(f"Recorded: {trial_line(trial)}\n", trial_record(trial))


#: What only a program evaluating points itself needs (a person at chat runs the job's objective instead).
ASK_AND_TELL = (
    Action("ask", "start a trial: the point to evaluate next (then tell its result)", NoArguments, _ask, changes=True),
    Action(
        "tell", "record a trial's result: its value, its metrics, or why it failed", TellArguments, _tell, changes=True
    ),
)


# The open studies ------------------------------------------------------------------------------------------


@dataclass
class _Held:
    """An open study's session, and the lock that lets one call at a time act on it."""

    session: Session
    lock: threading.Lock = field(default_factory=threading.Lock)


class Studies:
    """The studies the server holds open, by name, and the storage that a name alone refers to.

    A study is opened by ``load_study`` or ``create_study``, or on the first call that names it, from the
    default storage (then it can be looked at, steered, asked and told, but not run: only a job file knows
    its objective). Opening another study of the same name replaces the one held, except that loading by
    name a study already held keeps it: a study opened from its job file must not lose its objective.
    """

    def __init__(self, boundary: Boundary) -> None:
        self.boundary = boundary
        self.storage = boundary.storage
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()

    def open_job(self, path: str | Path) -> Session:
        """Hold the study of the job file at ``path``: created on first use, able to run trials."""
        return self._hold(Session.of_job(path, AUTHOR)).session

    def perform(self, action: Action, study: str, args: Arguments) -> Outcome:
        if isinstance(args, ReportArguments):  # written where the boundary allows, taken from the server's folder
            args = args.model_copy(update={"path": str(self.boundary.report(args.path))})
        held = self._get(study)
        with held.lock:
            return action.perform(held.session, args)

    def list_studies(self, args: ListArguments) -> Outcome:
        from agent.cli.common import captured
        from agent.cli.views import print_studies
        from agent.storage import open_storage
        from agent.study import Study
        from agent.summary import summarize

        url = self._url(args.storage)
        storage = open_storage(url, create=False)
        try:
            summaries = [summarize(Study(storage, record)) for record in storage.list_studies()]
        finally:
            storage.close()
        with captured() as table:
            print_studies(summaries)
        lines = [table[0] if summaries else f"No studies in {without_credentials(url)} yet.\n"]
        with self._lock:
            jobs = {name: held.session.job for name, held in self._held.items()}
        if jobs:
            lines.append("Open in this server:\n")
            lines += [f"  {name}: {_can_run(job is not None)}\n" for name, job in jobs.items()]
        opened = {name: {"job": None if job is None else str(job.path)} for name, job in jobs.items()}
        return Outcome("".join(lines), {"storage": without_credentials(url), "studies": summaries, "open": opened})

    def create_study(self, args: CreateArguments) -> Outcome:
        from agent.space import Space
        from agent.study import create_study

        study = create_study(
            args.name,
            Space.from_dict(args.space),
            direction=args.direction,
            storage=self._url(args.storage),
            metric=args.metric,
            seed=args.seed,
            load_if_exists=args.load_if_exists,
        )
        return _opened(self._hold(Session(study, AUTHOR)).session)

    def load_study(self, args: LoadArguments) -> Outcome:
        if (args.job is None) == (args.name is None):
            raise SessionError("load_study: give either job (a job file) or name (a stored study)")
        if args.job is not None:
            if args.storage is not None:
                raise SessionError("load_study: a job file names its own storage; leave out storage")
            return _opened(self.open_job(self.boundary.job(args.job)))
        assert args.name is not None
        if args.storage is None:
            return _opened(self._get(args.name).session)
        return _opened(self._hold(Session.of_study(args.name, self._url(args.storage), AUTHOR)).session)

    def close(self) -> None:
        with self._lock:
            held, self._held = list(self._held.values()), {}
        for h in held:
            with h.lock:
                h.session.close()

    def _url(self, storage: str | None) -> str:
        return self.boundary.storage_url(storage)

    def _get(self, name: str) -> _Held:
        """The held study ``name``, opened from the default storage on first use (once, by one call)."""
        with self._lock:
            held = self._held.get(name)
            if held is None:
                held = self._held[name] = _Held(Session.of_study(name, self.storage, AUTHOR))
        return held

    def _hold(self, session: Session) -> _Held:
        held = _Held(session)
        with self._lock:
            replaced = self._held.get(session.study.name)
            self._held[session.study.name] = held
        if replaced is not None:
            with replaced.lock:  # once the call acting on it, if any, is done
                replaced.session.close()
        return held


def _can_run(can: bool) -> str:
    return "run_trials evaluates its job's objective" if can else "no job file: ask for points and tell results"


def _opened(session: Session) -> Outcome:
    study = session.study
    can_run = session.job is not None
    count = len(study.trials)
    return Outcome(
        f"Study {study.name!r} is open ({count} trials); {_can_run(can_run)}.\n",
        {"name": study.name, "storage": without_credentials(study.storage.url), "trials": count, "can_run": can_run},
    )


# Tools ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tool:
    """One MCP tool: what it is listed as, its arguments, and what a call does with them once they are valid."""

    name: str
    description: str
    arguments: type[BaseModel]
    call: Callable[[Any], Outcome]
    read_only: bool

    @property
    def definition(self) -> types.Tool:
        return types.Tool(
            name=self.name,
            description=self.description,
            input_schema=self.arguments.model_json_schema(),
            annotations=types.ToolAnnotations(read_only_hint=self.read_only),
        )

    def __call__(self, raw: dict[str, Any]) -> Outcome:
        """Call the tool; :class:`SessionError` naming each faulty argument when they do not fit."""
        return self.call(validated(self.arguments, raw, self.name))


def tools(studies: Studies) -> list[Tool]:
    """Every tool of the server, acting on ``studies``."""
    own = [
        Tool(
            "list_studies",
            "the stored studies: trials, best value; and those open here",
            ListArguments,
            studies.list_studies,
            True,
        ),
        Tool(
            "create_study",
            "a new study to evaluate yourself, with ask and tell",
            CreateArguments,
            studies.create_study,
            False,
        ),
        Tool(
            "load_study",
            "open a job file's study (it can run trials: only a job file the server was started with, or under "
            "its --allow-jobs folders) or a stored study by name",
            LoadArguments,
            studies.load_study,
            False,
        ),
    ]
    return own + [_acting(action, studies) for action in (*ASK_AND_TELL, *ACTIONS.values())]


def _acting(action: Action, studies: Studies) -> Tool:
    """The tool of an action: the action's arguments, and the name of the study it acts on."""
    name = _TOOL_NAMES.get(action.name, action.name)
    arguments = create_model(
        f"{name}_arguments",
        __base__=action.arguments,
        study=(str, Field(max_length=MAX_NAME, description="the study's name (see list_studies)")),
    )
    return Tool(
        name, action.summary, arguments, lambda args: studies.perform(action, args.study, args), not action.changes
    )


# The server -------------------------------------------------------------------------------------------------


def build_server(studies: Studies, calls: Calls) -> Server[Any]:
    """The MCP server of ``studies``: it lists the tools and answers each call with a result or a tool error, each
    call run in a worker thread among ``calls`` (which a client gone interrupts)."""
    by_name = {tool.name: tool for tool in tools(studies)}

    async def list_tools(
        _: ServerRequestContext[Any], __: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[tool.definition for tool in by_name.values()])

    async def call_tool(_: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        tool = by_name.get(params.name)
        if tool is None:
            return _error(f"no tool {params.name!r}; the tools: {', '.join(by_name)}")
        try:
            return await anyio.to_thread.run_sync(calls.run, answer, tool, params.arguments or {})
        except KeyboardInterrupt:  # the client is gone; this answer is for the log
            return _error(f"{tool.name}: interrupted (the client went away); running trials marked interrupted")

    return Server(
        "tunesmith",
        version=__version__,
        instructions=_INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


def answer(tool: Tool, raw: dict[str, Any]) -> types.CallToolResult:
    """The result of calling ``tool``: its outcome as text and JSON, or a tool error that says what went wrong."""
    try:
        outcome = tool(raw)
    except (TunesmithError, ValueError, OSError) as exc:  # failures foreseen: their message says what to do
        return _error(str(exc))
    except Exception as exc:
        log.exception("tool %s failed", tool.name)
        return _error(f"internal error: {type(exc).__name__}: {exc}")
    data = outcome.data
    structured = data if isinstance(data, dict) or data is None else {tool.name: data}  # an object, as MCP asks
    return types.CallToolResult(content=[types.TextContent(text=outcome.text)], structured_content=structured)


def _error(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=redact(message))], is_error=True)


def serve(boundary: Boundary, jobs: Sequence[str | Path] = ()) -> None:
    """Serve over stdin and stdout until the client closes them: ``jobs`` opened first (their studies can
    run trials), what a client names held to ``boundary`` (its storage: where a study named alone is).

    Raises:
        TunesmithError: a job file cannot be opened (before anything is served).
    """
    studies = Studies(boundary)
    calls = Calls()
    with _protocol_fds() as (wire_in, wire_out), _stopped_by_sigterm(calls):
        try:
            opened = [studies.open_job(job).study.name for job in jobs]  # an objective imported may print
            log.info(
                "serving MCP on stdin and stdout; studies open: %s; a study named alone is looked up in %s; "
                "paths are confined to %s",
                ", ".join(opened) or "none",
                without_credentials(boundary.storage),
                boundary.root,
            )
            anyio.run(_serve, build_server(studies, calls), _Input(wire_in, calls), _Output(wire_out, calls))
        finally:
            studies.close()


async def _serve(server: Server[Any], stdin: _Input, stdout: _Output) -> None:
    # The SDK reads and writes any object with these methods; it is typed for anyio's file wrapper.
    async with stdio_server(stdin=cast(Any, stdin), stdout=cast(Any, stdout)) as (read, write):
        await server.run(read, write, server.create_initialization_options())


def _client_gone(calls: Calls, why: str) -> None:
    if running := calls.interrupt():
        log.warning("%s: interrupting the %d calls running (their trials are marked interrupted)", why, running)


class _Input:
    """The client's messages, line by line; its end of input means the client is gone: the calls running stop."""

    def __init__(self, wire: BinaryIO, calls: Calls) -> None:
        self._lines = io.TextIOWrapper(wire, encoding="utf-8", errors="replace")
        self._calls = calls

    def __aiter__(self) -> _Input:
        return self

    async def __anext__(self) -> str:
        line = await anyio.to_thread.run_sync(self._lines.readline, _MAX_LINE)
        if not line:
            _client_gone(self._calls, "the client closed its end of the pipe")
            raise StopAsyncIteration
        return line


class _Output:
    """The server's messages; a write the client no longer reads (a broken pipe) means the client is gone."""

    def __init__(self, wire: BinaryIO, calls: Calls) -> None:
        self._text = anyio.wrap_file(io.TextIOWrapper(wire, encoding="utf-8"))
        self._calls = calls

    async def write(self, text: str) -> None:
        await self._guarded(self._text.write(text))

    async def flush(self) -> None:
        await self._guarded(self._text.flush())

    async def _guarded(self, step: Awaitable[object]) -> None:
        try:
            await step
        except (BrokenPipeError, ConnectionResetError):
            _client_gone(self._calls, "the client stopped reading")
            raise


@contextmanager
def _stopped_by_sigterm(calls: Calls) -> Iterator[None]:
    """SIGTERM (``kill``, an MCP client ending the server) stops the server as a client gone does: the calls
    running are interrupted and given a moment to mark their trials; then the process exits at once, since
    the thread that reads the client's input may be waiting on a pipe that stays open."""

    def stop(signum: int, frame: object) -> None:
        from agent.cli.common import EXIT_INTERRUPTED

        _client_gone(calls, "SIGTERM")
        calls.wait(_STOP_WITHIN_S)
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _protocol_fds() -> Iterator[tuple[BinaryIO, BinaryIO]]:
    """Keep fd 0 and fd 1 for the protocol (the files yielded, input and output): until the block ends fd 0
    reads nothing and whatever is written to stdout goes to stderr.

    Why file descriptors: a C library and a child process use fd 0 and fd 1 themselves; one stray line on fd 1
    breaks the client's reading of the protocol, and a child reading fd 0 would take the client's messages.
    Why ``sys.stdout`` too: what ``print`` buffers would otherwise reach fd 1 when the interpreter flushes it at
    exit, after fd 1 is the protocol's again.
    """
    sys.stdout.flush()
    wire_in, wire_out = os.dup(0), os.dup(1)
    nothing = os.open(os.devnull, os.O_RDONLY)
    os.dup2(nothing, 0)
    os.close(nothing)
    os.dup2(2, 1)
    try:
        with (
            os.fdopen(wire_in, "rb", closefd=False) as read,
            os.fdopen(wire_out, "wb", closefd=False) as out,
            redirect_stdout(sys.stderr),
        ):
            yield read, out
    finally:
        sys.stdout.flush()  # what was written to sys.__stdout__ itself, while fd 1 is still stderr
        os.dup2(wire_in, 0)
        os.dup2(wire_out, 1)
        os.close(wire_in)
        os.close(wire_out)

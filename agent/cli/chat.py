"""``tunesmith chat [JOB | --study NAME]``: talk with a study, steer it and run its trials from a terminal.

Opened from its job file, the study can run trials (``/run N``); opened by name, it can be looked at and
steered. The model is the study's own unless ``--model`` names another (``--no-model``: commands only). A
batch ``tunesmith run`` may work on the same study at the same time: both read and write the same storage.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from agent.cli.common import EXIT_OK, EXIT_USAGE, console, exit_code, fail, print_job_problems
from agent.cli.targets import storage_url

if TYPE_CHECKING:
    from collections.abc import Callable

    from agent.interact.assistant import Assistant
    from agent.interact.session import Session


def register(commands: Any) -> None:
    chat = commands.add_parser(
        "chat",
        help="a terminal chat with a study: look, steer, run trials, ask its model",
        description="Chat with a study: /commands look at it, steer it and run trials (/help lists them); "
        "anything else is asked of the model, which may propose commands for you to confirm.",
    )
    chat.add_argument("job", nargs="?", metavar="JOB", help="the job file of the study (its trials can then be run)")
    chat.add_argument("--study", metavar="NAME", help="a stored study by name, instead of a job file")
    chat.add_argument(
        "--storage", metavar="URL", help="database URL or path (default: the job's storage, else ./tunesmith.db)"
    )
    model = chat.add_mutually_exclusive_group()
    model.add_argument("--model", metavar="SPEC", help="the model to talk to (default: the study's own)")
    model.add_argument("--no-model", action="store_true", help="commands only, no model")
    chat.set_defaults(handler=chat_command)


def chat_command(args: argparse.Namespace) -> int:
    from agent.cli.run import interrupt_on_sigterm, show_logs
    from agent.interact.chat import Chat

    out = console()
    show_logs(out, verbose=False, quiet=False)
    session = _open(args)
    spec = None if args.no_model else args.model or (str(session.study.model) if session.study.model else None)
    chat = Chat(session, _assistant_maker(session, spec), out, _reader(session))
    interrupt_on_sigterm()
    _greet(chat, spec)
    try:
        chat.loop()
    finally:
        session.close()
    return EXIT_OK


def _open(args: argparse.Namespace) -> Session:
    from agent.interact.session import Session
    from agent.jobfile import JobFileError
    from agent.storage import DEFAULT_STORAGE, StorageError

    if (args.job is None) == (args.study is None):
        fail("give a job file (tunesmith chat job.toml) or a stored study (tunesmith chat --study NAME), not both")
    try:
        if args.job is not None:
            session = Session.of_job(args.job, author="chat")
            if args.storage:
                fail("--storage goes with --study; a job file names its own storage ([study] storage)")
            return session
        return Session.of_study(args.study, storage_url(args.storage) if args.storage else DEFAULT_STORAGE, "chat")
    except JobFileError as exc:
        print_job_problems(exc, "opened")
        raise SystemExit(EXIT_USAGE) from None
    except (ValueError, StorageError) as exc:
        fail(str(exc), exit_code(exc))


def _assistant_maker(session: Session, spec: str | None) -> Callable[[], Assistant] | None:
    """How to reach the model, on the first message: starting one (a local server) takes seconds, and a chat
    of commands alone should not wait for it."""
    if spec is None:
        return None

    def make() -> Assistant:
        from agent.interact.assistant import Assistant

        return Assistant(session, session.study.task_gateway(spec))

    return make


def _reader(session: Session) -> Callable[[str], str]:
    """prompt_toolkit's line editor (history, completion) at a terminal; plain ``input`` when piped."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return input
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory

    from agent.interact.chat import CommandCompleter, history_path, line_bindings

    path = history_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    prompt: PromptSession[str] = PromptSession(
        history=FileHistory(str(path)),
        completer=CommandCompleter(session),
        complete_while_typing=False,
        key_bindings=line_bindings(),
    )
    return prompt.prompt


def _greet(chat: Any, spec: str | None) -> None:
    from agent.display import number

    study = chat.session.study
    trials = study.trials
    try:
        best = f"best {number(study.best_value)} (trial {study.best_trial.number})"
    except ValueError:
        best = "no complete trial yet"
    runs = "" if chat.session.job is not None else "; opened by name, so /run needs its job file"
    chat.say(f"Study {study.name}: {len(trials)} trials, {best}{runs}.")
    if study.events:
        from agent.steering import event_record, steering_line

        active = [event_record(e) for e in study.events if e.active]
        if active:
            chat.say(f"Steering: {steering_line(active)}")
    model = f"Model: {spec}; type a question, or" if spec else "No model: commands only;"
    chat.say(f"{model} /help for the commands, /quit to leave.")

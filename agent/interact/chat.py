"""``tunesmith chat``: a terminal conversation about one study, which can steer it and run its trials.

A line starting with ``/`` is a command (:data:`agent.interact.actions.ACTIONS`, plus ``/help`` and
``/quit``): it works the same with or without a model. Any other line goes to the model
(:class:`~agent.interact.assistant.Assistant`), which answers and may propose actions; each proposal that
would change the study is shown and done only when the person says yes.

Ctrl-C at the prompt clears the line; during ``/run`` it stops the running trials (marked interrupted, their
processes ended; every finished trial is kept) and returns to the prompt; during a model's answer it
abandons that answer. Ctrl-D or ``/quit`` leaves. Everything typed is kept in a history file, so the up
arrow reaches lines typed in earlier chats.

A line may hold :data:`MAX_LINE` characters; a longer one is refused with a message, and at a terminal what
is typed past the limit is not kept, so pasting a whole file costs no more than a line at the limit.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.filters import emacs_insert_mode, vi_insert_mode
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.key_binding.key_processor import KeyPress
from prompt_toolkit.keys import Keys

from agent.errors import TunesmithError
from agent.interact.actions import ACTIONS, Action
from agent.interact.session import Session
from agent.llm.client import LLMError

if TYPE_CHECKING:
    from rich.console import Console

    from agent.interact.assistant import Assistant, Proposed
    from agent.trial import Trial

#: The commands that are the chat's own rather than actions on the study.
CHAT_COMMANDS = {"help": "this list", "quit": "leave the chat (Ctrl-D too); the study stays as it is"}
PROMPT = "tunesmith> "
#: Characters of an action's result passed back to the model with the next message.
RESULT_CHARS = 2000
#: The longest line the chat reads: a question, a note or a point to enqueue is far shorter, and a pasted file
#: would fill the model's context rather than ask it anything.
MAX_LINE = 10_000


def history_path() -> Path:
    """Where typed lines are kept between chats: ``$TUNESMITH_CHAT_HISTORY``, else the XDG state folder."""
    given = os.environ.get("TUNESMITH_CHAT_HISTORY")
    if given:
        return Path(given).expanduser()
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return state / "tunesmith" / "chat-history"


class CommandCompleter(Completer):
    """Completes command names, then parameter names, then a categorical parameter's choices (``/fix opt=a``)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterator[Completion]:
        text = document.text_before_cursor
        if not text.startswith("/"):
            return
        command, space, rest = text[1:].partition(" ")
        if not space:
            names = [*ACTIONS, *CHAT_COMMANDS]
            yield from _matches(command, names, lambda n: ACTIONS[n].summary if n in ACTIONS else CHAT_COMMANDS[n])
            return
        action = ACTIONS.get(command)
        if action is None or " " in rest.strip():
            return
        space_now = self.session.study.steering.space
        if action.syntax == "assign" and "=" in rest:
            name, _, value = rest.partition("=")
            choices = getattr(space_now.get(name.strip()), "choices", ())
            yield from _matches(value, [str(c) for c in choices], lambda _: "choice")
        elif action.syntax in ("assign", "words") and "param" in action.arguments.model_fields:
            suffix = "=" if action.syntax == "assign" else " "
            names = [f"{name}{suffix}" for name in space_now]
            yield from _matches(rest, names, lambda n: space_now[n.rstrip(suffix)].describe())


def _matches(typed: str, options: Iterable[str], meta: Callable[[str], str]) -> Iterator[Completion]:
    for option in options:
        if option.startswith(typed):
            yield Completion(option, start_position=-len(typed), display_meta=meta(option))


def line_bindings() -> KeyBindings:
    """Typing and pasting at the prompt, at a cost that does not grow with the square of the line.

    prompt_toolkit's own typing binding (3.0.52) saves the whole line to the undo stack before every character
    (the binding it registers loses its ``save_before``), so a line of n characters held n copies of itself:
    a 100,000-character line took 4.9 GB and 50 s. Here a run of typing is one undo step, as prompt_toolkit
    means it to be; the characters already waiting in the input are inserted at once rather than a key
    binding lookup and a copy of the line each (a paste into a terminal without bracketed paste arrives as
    that many keys); and nothing past :data:`MAX_LINE` + 1 characters is kept, so such a line is refused
    when it is entered (:meth:`Chat.handle`) after work bounded by the limit, however much was pasted.
    """
    bindings = KeyBindings()

    @bindings.add(Keys.Any, filter=vi_insert_mode | emacs_insert_mode, save_before=lambda event: not event.is_repeat)
    def _type(event: KeyPressEvent) -> None:
        typed = [event.data * event.arg]
        app = event.app
        if not (app.emacs_state.is_recording or app.vi_state.recording_register):  # a macro records each key
            waiting = event.key_processor.input_queue
            while waiting and _plain(waiting[0]):
                typed.append(waiting.popleft().data)
        _insert(event, "".join(typed))

    @bindings.add(Keys.BracketedPaste)
    def _paste(event: KeyPressEvent) -> None:
        # As prompt_toolkit's own paste binding: some terminals (iTerm2) paste \r\n line endings.
        _insert(event, event.data.replace("\r\n", "\n").replace("\r", "\n"))

    return bindings


def _plain(key: KeyPress) -> bool:
    """Whether ``key`` is a printable character typed as itself, which no binding but typing's acts on."""
    return key.key == key.data and len(key.data) == 1 and key.data.isprintable()


def _insert(event: KeyPressEvent, text: str) -> None:
    """Insert ``text`` at the cursor, keeping the line at most one character over :data:`MAX_LINE`."""
    buffer = event.current_buffer
    room = MAX_LINE + 1 - len(buffer.text)
    if room < len(text):
        event.app.output.bell()
    if room > 0:
        buffer.insert_text(text[:room])


class Chat:
    """The read-act loop of one chat.

    Args:
        session: the open study.
        assistant: makes the model's side of the conversation, on the first message (starting a model takes
            seconds); None for commands only.
        out: where everything is shown.
        read: reads one line after showing a prompt; raises EOFError at the end of input and KeyboardInterrupt
            on Ctrl-C (prompt_toolkit's prompt in a terminal, ``input`` otherwise).
    """

    def __init__(
        self,
        session: Session,
        assistant: Callable[[], Assistant] | None,
        out: Console,
        read: Callable[[str], str],
    ) -> None:
        self.session = session
        self.assistant: Assistant | None = None
        self._make_assistant = assistant
        self.out = out
        self.read = read
        session.on_trial = self._show_trial

    def loop(self) -> None:
        """Read and act until ``/quit`` or the end of input."""
        while True:
            try:
                line = self.read(PROMPT).strip()
            except KeyboardInterrupt:
                continue  # Ctrl-C at the prompt clears the line, as in a shell
            except EOFError:
                break
            if not line:
                continue
            if not self.handle(line):
                break
        self.say(f"Left the chat; study {self.session.study.name} has {len(self.session.study.trials)} trials.")

    def handle(self, line: str) -> bool:
        """Act on one line; False when it asks to leave."""
        if len(line) > MAX_LINE:
            self.say(f"A line may hold {MAX_LINE:,} characters and this one is longer: nothing was done.", style="red")
            return True
        if not line.startswith("/"):
            self._converse(line)
            return True
        name, _, rest = line[1:].partition(" ")
        if name in ("quit", "exit", "q"):
            return False
        if name in ("help", "?"):
            self._help()
            return True
        action = ACTIONS.get(name)
        if action is None:
            self.say(f"Unknown command /{name}; /help lists them.", style="red")
            return True
        try:
            arguments = action.parse(rest)
        except TunesmithError as exc:
            self.say(str(exc), style="red")
            return True
        result = self._perform(action, arguments)
        if result is not None and self.assistant is not None:
            self.assistant.record(f"The person ran /{name} {rest}".rstrip() + f": {result[:RESULT_CHARS]}")
        return True

    def say(self, text: str, style: str | None = None) -> None:
        self.out.print(text, style=style, markup=False, highlight=False, soft_wrap=True)

    def _perform(self, action: Action, arguments: object) -> str | None:
        """Do ``action``; its text (shown), or None when it failed or was stopped."""
        try:
            outcome = action.perform(self.session, arguments)
        except KeyboardInterrupt:
            self.say(
                "Interrupted: the running trials were stopped and marked interrupted; every finished trial is kept. "
                "/run N goes on.",
                style="yellow",
            )
            return None
        except (TunesmithError, ValueError, OSError) as exc:
            self.say(f"error: {exc}", style="red")
            return None
        self.say(outcome.text.rstrip())
        return outcome.text

    def _show_trial(self, trial: Trial) -> None:
        from agent.display import trial_line

        self.say(trial_line(trial), style="red" if trial.error else None)

    def _help(self) -> None:
        width = max(len(a.usage) for a in ACTIONS.values())
        for action in ACTIONS.values():
            self.say(f"  {action.usage:<{width}}  {action.summary}")
        for name, summary in CHAT_COMMANDS.items():
            self.say(f"  {'/' + name:<{width}}  {summary}")
        if self._make_assistant is None:
            self.say("No model is configured: commands only (start the chat with --model SPEC to talk to one).")
        else:
            self.say("Anything else is a message to the model, which may propose commands for you to confirm.")

    def _converse(self, message: str) -> None:
        if self._make_assistant is None:
            self.say(
                "No model is configured for this study, so only commands work (/help lists them); "
                "start the chat with --model SPEC to talk to one.",
                style="yellow",
            )
            return
        if self.assistant is None:
            try:
                with self.out.status("starting the model..."):
                    self.assistant = self._make_assistant()
            except (TunesmithError, ValueError) as exc:  # LLMError: a missing package, key or file
                self.say(f"The model cannot be used: {exc}. Commands still work (/help).", style="red")
                return
        try:
            with self.out.status(f"{self.assistant.gateway.model} is thinking..."):
                reply = self.assistant.ask(message)
        except KeyboardInterrupt:
            self.say("(answer abandoned)", style="yellow")
            return
        except LLMError as exc:
            self.say(f"The model gave no answer: {exc}. Commands still work (/help).", style="red")
            return
        if reply.text:
            self.say(reply.text, style="cyan")
        for problem in reply.problems:
            self.say(problem, style="yellow")
        for proposed in reply.actions:
            self._consider(proposed)

    def _consider(self, proposed: Proposed) -> None:
        """Do a proposed action the person agrees to; one that only reads is done at once."""
        assert self.assistant is not None
        if proposed.action.changes:
            self.say(f"The model proposes {proposed}: {proposed.action.summary}.", style="bold")
            try:
                answer = self.read("Do it? [y/N] ").strip().lower()
            except (KeyboardInterrupt, EOFError):
                answer = ""
            if answer not in ("y", "yes"):
                self.say("Not done.")
                self.assistant.record(f"The person declined {proposed}.")
                return
        result = self._perform(proposed.action, proposed.arguments)
        outcome = "failed or was stopped" if result is None else f"was done: {result[:RESULT_CHARS]}"
        self.assistant.record(f"{proposed} {outcome}")

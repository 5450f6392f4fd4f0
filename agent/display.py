"""How numbers, parameters and trials are shown to people: in log lines, the CLI and error messages.

One module so that a trial reads the same in a log line, the CLI's table and an error: a float computed
as ``0.49999999999999994`` shows as ``0.5`` everywhere, a program proposed for a Code parameter shows as
one cut line, and a failed command shows what went wrong (``ModuleNotFoundError: ...``) rather than only
its exit status.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from agent.trial import INTERRUPTED, Trial, TrialState

if TYPE_CHECKING:
    from agent.space import ParamValue, Space

#: Characters of one parameter value in :func:`short_params`.
VALUE_CHARS = 40
#: Characters of a failure's cause in :func:`trial_line`.
CAUSE_CHARS = 200
#: Errors that say only *that* a command failed; the last line it printed says why.
_GENERIC_ERROR = re.compile(r"^(the command|stage '\w+') exited with status -?\d+$")
#: The keys of a parameter's entry that :func:`space_changes` always shows; others show where they differ.
_ALWAYS_SHOWN = ("type", "low", "high", "choices")
#: A word that needs no quotes: ``adam``, ``relu6``, ``a-b_c.d``.
_BARE_WORD = re.compile(r"^[\w.+\-/:]+$")


def number(x: float | int | None) -> str:
    """``x`` to 6 significant digits (``0.49999999999999994`` -> ``0.5``); integers whole; None -> ``-``."""
    if x is None:
        return "-"
    if isinstance(x, bool | numbers.Integral):
        return str(x)
    return f"{x:.6g}"


def cut(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, ending in ``...`` when cut."""
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."


def one_line(text: str) -> str:
    """``text`` on one line: newlines as ``⏎``, tabs as spaces, other control characters escaped."""
    text = text.replace("\r\n", "\n").replace("\t", " ")
    return "".join("⏎" if c == "\n" else c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def value_text(value: object, limit: int = VALUE_CHARS) -> str:
    """One parameter value (or any JSON value: a user attribute), readable and on one line.

    Numbers go through :func:`number`; a string is bare when it is one word (``adam``) and quoted otherwise
    (``"be brief"``), so that ``a=x b=y`` stays unambiguous; a long string (a prompt, a program) is cut to
    ``limit`` characters with ``...``, its newlines shown as ``⏎``.
    """
    if value is None or isinstance(value, int | float):
        return number(value)
    text = one_line(str(value))
    if _BARE_WORD.match(text):
        return cut(text, limit)
    return '"' + cut(text.replace('"', '\\"'), max(limit - 2, 4)) + '"'


def short_params(params: Mapping[str, ParamValue], limit: int = 80) -> str:
    """``lr=0.001 depth=3 optimizer=adam``, cut to ``limit`` characters with ``...``."""
    return cut(" ".join(f"{name}={value_text(value)}" for name, value in params.items()), limit)


def failure_cause(trial: Trial) -> str | None:
    """Why a failed trial failed, on one line; None for a trial that did not fail (or was interrupted).

    The first line of the error, and, when the error only says that the command exited with a status, the
    last non-empty line the command printed (``ModuleNotFoundError: No module named 'sklearn'``), which is
    what a person needs first. Two trials that failed for the same reason have the same cause.
    """
    if trial.state is not TrialState.FAILED or trial.interrupted:
        return None
    error = (trial.error or "").strip()
    cause = error.splitlines()[0] if error else "failed without an error message"
    if _GENERIC_ERROR.match(cause):
        printed = [line.strip() for line in (trial.feedback or "").splitlines() if line.strip()]
        if printed:
            cause = f"{cause}: {printed[-1]}"
    return one_line(cause)


def seconds(s: float | None) -> str:
    """A duration for people: ``0.03 s``, ``2.1 s``, ``125 s``; ``-`` when unknown."""
    if s is None:
        return "-"
    return f"{s:.2f} s" if s < 1 else f"{s:.1f} s" if s < 10 else f"{s:.0f} s"


def trial_line(trial: Trial) -> str:
    """One line for a trial: ``trial 3 complete  0.934 (bo, 2.1 s)  lr=0.001 depth=3``.

    A failed trial shows its :func:`failure_cause` instead of a value:
    ``trial 4 failed: the command exited with status 1: ModuleNotFoundError: ... (bo, 0.3 s)  lr=...``, and a
    pruned one the first line of its feedback: ``trial 5 pruned: 0.25 on a minibatch of 8, the best has 0.375
    there: not scored further (prompt, 2.5 s)``.
    """
    if trial.state is TrialState.COMPLETE:
        outcome = f"complete  {number(trial.value)}"
    elif trial.interrupted:
        outcome = INTERRUPTED
    elif trial.state is TrialState.FAILED:
        outcome = f"failed: {cut(failure_cause(trial) or '', CAUSE_CHARS)}"
    elif trial.state is TrialState.PRUNED and trial.feedback:  # why it stopped early, said first by the evaluator
        outcome = f"pruned: {cut(trial.feedback.splitlines()[0], CAUSE_CHARS)}"
    else:
        outcome = trial.state.value
    timing = f", {seconds(trial.duration_s)}" if trial.duration_s is not None else ""
    return f"trial {trial.number} {outcome} ({trial.proposer}{timing})  {short_params(trial.params)}"


def space_changes(stored: Space, now: Space) -> list[str]:
    """Each parameter that differs between two spaces, one line each: ``x: stored float [0, 1], now float
    [0, 2]``, ``y: added (float [0, 1])``, ``z: removed (was int [1, 5])``.

    The default of a Text or Code parameter is where the search starts, not what is searched: a prompt
    reworded, or the file a Code parameter points at edited, between two runs is no change of the space.
    """
    before, after = _searched(stored), _searched(now)
    changes = []
    for name in [*before, *(n for n in after if n not in before)]:
        if name not in before:
            changes.append(f"{name}: added ({_param_text(after[name], {})})")
        elif name not in after:
            changes.append(f"{name}: removed (was {_param_text(before[name], {})})")
        elif before[name] != after[name]:
            old, new = before[name], after[name]
            changes.append(f"{name}: stored {_param_text(old, new)}, now {_param_text(new, old)}")
    return changes


def _searched(space: Space) -> dict[str, dict[str, Any]]:
    """The job-file form of ``space`` without the defaults of its Text and Code parameters."""
    from agent.space import Text

    return {
        name: {key: value for key, value in entry.items() if not (key == "default" and isinstance(space[name], Text))}
        for name, entry in space.to_dict().items()
    }


def _param_text(entry: Mapping[str, Any], other: Mapping[str, Any]) -> str:
    """A parameter's job-file entry in brief: its type and range or choices, and its other settings where
    they differ from ``other`` (so ``step`` shows only when the step changed)."""
    parts = [str(entry.get("type", "?"))]
    if "low" in entry and "high" in entry:
        parts.append(f"[{number(entry['low'])}, {number(entry['high'])}]")
    if "choices" in entry:
        parts.append("[" + ", ".join(value_text(c) for c in entry["choices"]) + "]")
    for key, value in entry.items():
        if key not in _ALWAYS_SHOWN and other.get(key) != value:
            parts.append(f"{key}={repr(value) if isinstance(value, list | dict) else value_text(value)}")
    parts += [f"no {key}" for key in other if key not in entry and key not in _ALWAYS_SHOWN]
    return " ".join(parts)

"""A labelled dev set: the examples a prompt or pipeline is tuned on, read from a JSON Lines file.

Each line is one JSON object with an ``"input"`` (what the pipeline is given: a string, or an object such
as ``{"question": ..., "context": ...}``) and an ``"expected"`` answer (a string, or a list of acceptable
answers); any other key is kept for templates and pipelines to use.

The file is checked whole before any model call, and every faulty line is reported at once with its line
number: a dev set is often hand-written, and fixing it one error per (paid) run would be slow and costly.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import TunesmithError
from agent.files import MIB, FileRefused, read_bounded

#: The largest dev set read: tens of thousands of examples, more than a tuning run evaluates; a device or a runaway
#: file is refused rather than read into memory.
DEVSET_LIMIT = 64 * MIB
#: How many problems a DevSetError's message lists; ``problems`` holds them all.
MAX_LISTED = 20

_ONE_LINE = '{"input": "...", "expected": "..."}'


class DevSetError(TunesmithError, ValueError):
    """A dev set that cannot be used. ``problems`` holds one line per fault, each naming the file and line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        listed = problems[:MAX_LISTED]
        if len(problems) > MAX_LISTED:
            listed = [*listed, f"... and {len(problems) - MAX_LISTED} more"]
        super().__init__("; ".join(listed))


@dataclass(frozen=True)
class Example:
    """One labelled example of a dev set.

    Attributes:
        index: its 0-based position among the examples (blank lines do not count).
        line: its 1-based line number in the file, to point the user at it.
        input: what the pipeline is given: any JSON value but null.
        expected: the acceptable answers, at least one; a metric scores an output against the best of them.
        record: the whole JSON object, extra keys included, for templates and pipelines.
    """

    index: int
    line: int
    input: Any = field(hash=False)  # an object input is a dict: not hashable
    expected: tuple[str, ...]
    record: Mapping[str, Any] = field(hash=False)

    def fields(self) -> dict[str, Any]:
        """The record's keys for filling a template, ``expected`` shown as its first answer.

        A template writes ``{expected}`` to show the answer (in a few-shot demonstration, say); a list of
        alternatives would show as a Python list.
        """
        return {**self.record, "expected": self.expected[0]}


class _LineError(Exception):
    """What is wrong with one line, without its ``"<file> line N: "`` prefix (added by the caller)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def load_examples(path: str | Path) -> list[Example]:
    """Read a JSON Lines dev set: one object per line; blank lines are skipped, a UTF-8 BOM is accepted.

    Raises:
        DevSetError: listing every problem in the file (not only the first), each with its line number.
    """
    path = Path(path)
    lines = _nonblank_lines(_read(path))
    if not lines:
        raise DevSetError([f"{path.name}: no examples; write one JSON object per line: {_ONE_LINE}"])
    examples: list[Example] = []
    problems: list[str] = []
    for number, line in lines:
        try:
            examples.append(_example(line, number, index=len(examples)))
        except _LineError as exc:
            problems.extend(f"{path.name} line {number}: {problem}" for problem in exc.problems)
    if problems:
        raise DevSetError(_one_document_hint(path, lines) or problems)
    return examples


def _read(path: Path) -> bytes:
    """The file's bytes: decoded line by line later, so that a bad byte can be pinned to its line."""
    try:
        return read_bounded(path, DEVSET_LIMIT)
    except FileNotFoundError:
        raise DevSetError([f"{path.name}: no such file (looked in {path.absolute().parent})"]) from None
    except FileRefused as exc:
        raise DevSetError([f"{path.name}: cannot read it ({exc})"]) from None
    except OSError as exc:
        raise DevSetError([f"{path.name}: cannot read it ({exc.strerror or exc})"]) from None


def _nonblank_lines(raw: bytes) -> list[tuple[int, bytes]]:
    """The lines holding something, with their 1-based numbers; an editor's BOM is not part of line 1."""
    lines = raw.removeprefix(codecs.BOM_UTF8).splitlines()
    return [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]


def _example(line: bytes, number: int, index: int) -> Example:
    record = _json_object(_decode(line))
    problems = _input_problems(record) + _expected_problems(record)
    if problems:
        raise _LineError(problems)
    expected = record["expected"]
    answers = (expected,) if isinstance(expected, str) else tuple(expected)
    return Example(index=index, line=number, input=record["input"], expected=answers, record=record)


def _decode(line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as exc:
        column = len(line[: exc.start].decode("utf-8")) + 1  # what comes before the bad byte is valid
        raise _LineError(
            [f"not UTF-8 text (byte 0x{line[exc.start]:02x} at column {column}); save the file as UTF-8"]
        ) from None


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _LineError([f"invalid JSON: {exc.msg} (column {exc.colno})"]) from None
    if not isinstance(value, dict):
        raise _LineError([f'expected a JSON object such as {{"input": ..., "expected": ...}}, got {_kind(value)}'])
    return value


def _input_problems(record: Mapping[str, Any]) -> list[str]:
    if "input" not in record:
        return ['missing "input" (what the pipeline is given: a string or an object)']
    if record["input"] is None:
        return ['"input" is null; give a string or an object']
    return []


def _expected_problems(record: Mapping[str, Any]) -> list[str]:
    if "expected" not in record:
        return ['missing "expected" (the answer, or a list of acceptable answers)']
    expected = record["expected"]
    if isinstance(expected, str):
        return []
    if not isinstance(expected, list):
        return [_answer_problem('"expected"', expected, "a string or a list of strings", key='"expected": ')]
    if not expected:
        return ['"expected" is an empty list; give at least one acceptable answer']
    return [
        _answer_problem(f'"expected"[{i}]', answer, "a string")
        for i, answer in enumerate(expected)
        if not isinstance(answer, str)
    ]


def _answer_problem(where: str, value: Any, wanted: str, key: str = "") -> str:
    """Why ``value`` is not an answer; a number or a bool is told to be quoted, the usual slip.

    ``key`` (``'"expected": '``) starts the quoted fix shown for a top-level value; a list item has none.
    """
    if isinstance(value, bool | int | float):
        text = json.dumps(value)
        return f"{where} is {_kind(value)} ({text}); quote it: {key}{json.dumps(text)}"
    return f"{where} is {_kind(value)}; give {wanted}"


def _kind(value: Any) -> str:
    """The JSON name of ``value``'s type, as the user wrote it in the file."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def _one_document_hint(path: Path, lines: list[tuple[int, bytes]]) -> list[str]:
    """One clear problem for a pretty-printed JSON file (an array, or an indented object) given as a dev set.

    Read line by line, such a file fails on nearly every line, and none of those errors names the cause.
    """
    if len(lines) < 2:
        return []
    try:
        json.loads(b"\n".join(line for _, line in lines))
    except ValueError:  # not one JSON document either (or not UTF-8): the per-line problems stand
        return []
    return [
        f"{path.name}: the file is one JSON document spread over several lines; "
        f"write one JSON object per line: {_ONE_LINE}"
    ]

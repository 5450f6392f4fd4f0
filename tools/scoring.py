"""How one pipeline output is scored against one dev-set example.

A metric is ``metric(output, example) -> float``: the built-ins (:data:`BUILTIN_METRICS`) score in [0, 1],
taking the best over the example's acceptable answers; a user's ``"module:function"`` is checked on every
call, so that a metric returning None or NaN fails loudly, naming the example, instead of skewing a mean.
"""

from __future__ import annotations

import functools
import math
import numbers
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent.errors import ConfigError, TunesmithError
from tools.devset import Example
from tools.function import resolve_callable

Metric = Callable[[Any, Example], float]

#: Stripped from an answer's start: the quotes (straight, curly, guillemets), markdown emphasis and Spanish
#: opening marks a model wraps its answer in.
_LEADING = " \"'`*\u201c\u201d\u2018\u2019\u00ab\u00bb\u2039\u203a\u201e\u201a\u00bf\u00a1"
#: Stripped from an answer's end: the same, and the sentence punctuation a model ends its answer with.
_TRAILING = _LEADING + ".,;:!?。、"
#: Brackets removed when they wrap the whole answer (``"(B)"``), and only then: ``f(x)`` keeps its own.
_BRACKETS = ("()", "[]", "{}", "<>")


class MetricError(TunesmithError, ValueError):
    """A metric that cannot score: a user's function returned something other than a number, or an
    expected answer is not a valid regular expression."""


def normalize_answer(text: str) -> str:
    """The answer as compared: casefolded, NFKC-normalized, whitespace collapsed, wrapping punctuation gone.

    Small models add a period, quotes or markdown around an answer (``" Positive."``, ``'"yes"'``,
    ``"**B**"``); the label is what matters, so those do not decide a match. Only what wraps the answer is
    removed, and only what cannot be part of one: ``"C#"``, ``"-5"``, ``".5"`` and ``"f(x)"`` are kept.
    """
    text = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    while True:
        stripped = _unwrap(text.lstrip(_LEADING).rstrip(_TRAILING))
        if stripped == text:
            return text
        text = stripped


def _unwrap(text: str) -> str:
    """``text`` without a pair of brackets around all of it: ``"(b)"`` is ``"b"``, ``"(a) or (b)"`` stays."""
    for pair in _BRACKETS:
        inner = text[1:-1]
        if len(text) >= 2 and text[0] + text[-1] == pair and pair[0] not in inner and pair[1] not in inner:
            return inner
    return text


def _text(output: Any) -> str:
    """The output as text; None (a pipeline that answered nothing) is empty, not the word "none"."""
    if output is None:
        return ""
    return output if isinstance(output, str) else str(output)


def exact_match(output: Any, example: Example) -> float:
    """1.0 when the normalized output equals a normalized expected answer."""
    answer = normalize_answer(_text(output))
    return float(any(answer == normalize_answer(expected) for expected in example.expected))


def contains(output: Any, example: Example) -> float:
    """1.0 when a normalized expected answer occurs in the normalized output as a whole word or phrase.

    A model that explains before it answers ("The sentiment is positive.") still scores, but "positive" is
    not found in "positively" nor "no" in "not": a bare substring test would reward the wrong answer. An
    empty expected answer would occur everywhere, so it is found only in an empty output.
    """
    answer = normalize_answer(_text(output))
    return float(any(_found(normalize_answer(expected), answer) for expected in example.expected))


def _found(phrase: str, text: str) -> bool:
    if not phrase:
        return not text
    return _compiled(rf"(?<!\w){re.escape(phrase)}(?!\w)").search(text) is not None


def regex(output: Any, example: Example) -> float:
    """1.0 when an expected answer, read as a regular expression, is found (``re.search``) in the raw output.

    The output is not normalized: a pattern says for itself what it allows (flags inline, e.g. ``(?i)``).

    Raises:
        MetricError: an expected answer is not a valid regular expression (:func:`check_examples` finds it
            before any model call).
    """
    text = _text(output)
    return float(any(_pattern(expected, example).search(text) for expected in example.expected))


def _pattern(expected: str, example: Example) -> re.Pattern[str]:
    try:
        return _compiled(expected)
    except re.error as exc:
        raise MetricError(
            f"line {example.line}: expected {expected!r} is not a valid regular expression ({exc})"
        ) from None


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    """Each pattern is compiled once, though it is searched once per candidate (``re``'s own cache is small)."""
    return re.compile(pattern)


def token_f1(output: Any, example: Example) -> float:
    """The best SQuAD-style token F1 between the output and an expected answer, both normalized.

    Tokens are the words of the normalized text, each stripped of wrapping punctuation ("paris," is
    "paris"); they are counted as a multiset. Two empty answers agree (1.0); one empty scores 0.0. Unlike
    SQuAD, English articles are kept: a dev set may be in any language.
    """
    tokens = _tokens(_text(output))
    return max(_f1(tokens, _tokens(expected)) for expected in example.expected)


def _tokens(text: str) -> list[str]:
    return [token for word in normalize_answer(text).split() if (token := normalize_answer(word))]


def _f1(predicted: list[str], expected: list[str]) -> float:
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


#: The metrics a dev set can be scored with by name.
BUILTIN_METRICS: dict[str, Metric] = {
    "exact_match": exact_match,
    "contains": contains,
    "regex": regex,
    "token_f1": token_f1,
}


def resolve_metric(name: str, folder: Path | None = None) -> Metric:
    """A built-in metric by name, or the user's ``"module:function"`` imported from ``folder`` first.

    The user's function is called as ``fn(output, example)``, ``example`` being the dev set's JSON object (a
    dict: ``example["expected"]`` as written in the file), as a pipeline function gets it; it must return a
    finite number or a bool.

    Raises:
        ConfigError: (a ValueError) ``name`` is neither a built-in nor of the ``"module:function"`` form.
        ValueError: the user's module or function cannot be imported.
    """
    if name in BUILTIN_METRICS:
        return BUILTIN_METRICS[name]
    if ":" not in name:
        raise ConfigError(
            f"unknown metric {name!r}; use one of {', '.join(BUILTIN_METRICS)}, "
            'or "module:function" for your own, called as function(output, example)'
        )
    return _checked(resolve_callable(name, folder), name)


def _checked(fn: Callable[..., Any], name: str) -> Metric:
    """``fn`` with its return value checked: a wrong one raises MetricError naming ``name`` and the example."""

    @functools.wraps(fn)
    def metric(output: Any, example: Example) -> float:
        return _score(fn(output, example.record), name, example)

    return metric


def _score(value: Any, name: str, example: Example) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, numbers.Real) and math.isfinite(float(value)):
        return float(value)
    raise MetricError(
        f"metric {name!r} returned {value!r} ({type(value).__name__}) for the example on line {example.line}; "
        "return a finite number (e.g. 1.0 for a hit) or a bool"
    )


def check_examples(examples: Sequence[Example], metric_name: str, source: str = "dev set") -> list[str]:
    """What ``metric_name`` cannot score in the dev set, found before any model call is paid for.

    Only ``regex`` has such problems: each expected answer must compile. ``source`` (the file's name) starts
    each problem, with the example's line: ``"dev.jsonl line 7: ..."``.
    """
    if metric_name != "regex":
        return []
    problems = []
    for example in examples:
        for i, expected in enumerate(example.expected):
            try:
                _compiled(expected)
            except re.error as exc:
                which = "expected" if len(example.expected) == 1 else f"expected[{i}]"
                problems.append(
                    f"{source} line {example.line}: {which} is not a valid regular expression: {expected!r} ({exc})"
                )
    return problems

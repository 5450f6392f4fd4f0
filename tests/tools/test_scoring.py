"""Scoring an output against a dev-set example: the built-in metrics and a user's own, from a real module."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from tools.devset import Example
from tools.scoring import (
    BUILTIN_METRICS,
    MetricError,
    check_examples,
    contains,
    exact_match,
    normalize_answer,
    regex,
    resolve_metric,
    token_f1,
)


def example(*expected: str, line: int = 1) -> Example:
    record: dict[str, Any] = {"input": "x", "expected": expected[0] if len(expected) == 1 else list(expected)}
    return Example(index=0, line=line, input="x", expected=expected, record=record)


# normalize_answer ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        (" Positive.", "positive"),
        ('"yes"', "yes"),
        ("**B**", "b"),
        ("(B)", "b"),
        ("\u201cOui\u201d !", "oui"),
        ("`done`", "done"),
        ("New \n  York", "new york"),
        ("\uff21\uff22\uff23", "abc"),  # fullwidth letters, NFKC
        ("STRASSE", "strasse"),
        ("Straße", "strasse"),  # casefold, not lower
        ("", ""),
    ],
)
def test_normalize_answer_removes_what_wraps_the_label(raw: str, normalized: str) -> None:
    assert normalize_answer(raw) == normalized


@pytest.mark.parametrize("answer", ["c#", "-5", ".5", "f(x)", "(a) or (b)", "3.14"])
def test_normalize_answer_keeps_what_can_be_part_of_an_answer(answer: str) -> None:
    assert normalize_answer(answer) == answer


# Built-in metrics ---------------------------------------------------------------------------------------
def test_exact_match_ignores_case_punctuation_and_quotes() -> None:
    assert exact_match(" Positive.", example("positive")) == 1.0
    assert exact_match('"NEGATIVE"', example("negative")) == 1.0
    assert exact_match("positive sentiment", example("positive")) == 0.0


def test_exact_match_takes_the_best_alternative() -> None:
    assert exact_match("mixed", example("neutral", "mixed")) == 1.0
    assert exact_match("positive", example("neutral", "mixed")) == 0.0


def test_an_output_that_is_not_text_is_converted() -> None:
    assert exact_match(42, example("42")) == 1.0
    assert exact_match(None, example("none")) == 0.0  # a pipeline that answered nothing did not say "none"


def test_contains_finds_the_answer_as_a_whole_word_or_phrase() -> None:
    assert contains("The answer is Positive.", example("positive")) == 1.0
    assert contains("I'd say: new york, probably", example("New York")) == 1.0
    assert contains("it is written in C++ mostly", example("c++")) == 1.0
    assert contains("somewhere else", example("paris", "else")) == 1.0


def test_contains_does_not_find_part_of_a_word() -> None:
    assert contains("positively", example("positive")) == 0.0
    assert contains("that is not it", example("no")) == 0.0
    assert contains("newyork", example("new york")) == 0.0


def test_contains_finds_an_empty_answer_only_in_an_empty_output() -> None:
    assert contains("", example("")) == 1.0
    assert contains("anything", example("")) == 0.0


def test_regex_searches_the_raw_output_with_inline_flags() -> None:
    assert regex("Answer: 42.", example(r"\b42\b")) == 1.0
    assert regex("Answer: 420", example(r"\b42\b")) == 0.0
    assert regex("POSITIVE", example("positive")) == 0.0  # not normalized
    assert regex("POSITIVE", example("(?i)positive")) == 1.0
    assert regex("no", example("^yes$", "^no$")) == 1.0


def test_regex_with_an_invalid_pattern_names_the_line() -> None:
    with pytest.raises(MetricError, match=r"line 7: expected '\(unclosed' is not a valid regular expression"):
        regex("anything", example("(unclosed", line=7))


def test_token_f1_scores_partial_overlap() -> None:
    assert token_f1("Paris, France", example("paris")) == pytest.approx(2 / 3)
    assert token_f1("the the cat", example("the cat")) == pytest.approx(0.8)  # a multiset: one "the" is extra
    assert token_f1("paris", example("Paris.")) == 1.0
    assert token_f1("london", example("paris")) == 0.0


def test_token_f1_takes_the_best_alternative_and_handles_empty_answers() -> None:
    assert token_f1("new york city", example("paris", "new york city")) == 1.0
    assert token_f1("", example("")) == 1.0
    assert token_f1("...", example("")) == 1.0  # nothing but punctuation is empty
    assert token_f1("", example("paris")) == 0.0
    assert token_f1("paris", example("")) == 0.0


# resolve_metric -----------------------------------------------------------------------------------------
def test_a_builtin_is_resolved_by_name() -> None:
    assert {name: resolve_metric(name) for name in BUILTIN_METRICS} == BUILTIN_METRICS


def write_metrics(folder: Path) -> None:
    (folder / "my_metrics.py").write_text(
        textwrap.dedent(
            """
            def same(output, example):
                return output == example["expected"]

            def length_ratio(output, example):
                return len(output) / len(example["expected"])

            def forgot_return(output, example):
                output == example["expected"]

            def nan(output, example):
                return float("nan")
            """
        )
    )


@pytest.mark.usefixtures("clean_imports")
def test_a_user_metric_may_return_a_bool_or_a_number(tmp_path: Path) -> None:
    write_metrics(tmp_path)
    same = resolve_metric("my_metrics:same", tmp_path)
    assert same("yes", example("yes")) == 1.0
    assert same("no", example("yes")) == 0.0
    assert resolve_metric("my_metrics:length_ratio", tmp_path)("abc", example("abcdef")) == 0.5


@pytest.mark.usefixtures("clean_imports")
@pytest.mark.parametrize(("function", "returned"), [("forgot_return", "None (NoneType)"), ("nan", "nan (float)")])
def test_a_user_metric_returning_no_number_names_itself_and_the_line(
    tmp_path: Path, function: str, returned: str
) -> None:
    write_metrics(tmp_path)
    metric = resolve_metric(f"my_metrics:{function}", tmp_path)
    with pytest.raises(MetricError) as caught:
        metric("yes", example("yes", line=12))
    assert str(caught.value) == (
        f"metric 'my_metrics:{function}' returned {returned} for the example on line 12; "
        "return a finite number (e.g. 1.0 for a hit) or a bool"
    )


@pytest.mark.usefixtures("clean_imports")
def test_a_user_metric_that_cannot_be_imported_says_why(tmp_path: Path) -> None:
    write_metrics(tmp_path)
    with pytest.raises(ValueError, match="module 'my_metrics' has no attribute 'missing'"):
        resolve_metric("my_metrics:missing", tmp_path)


def test_an_unknown_metric_lists_the_builtins_and_the_module_form() -> None:
    with pytest.raises(ValueError) as caught:
        resolve_metric("accuracy")
    assert str(caught.value) == (
        "unknown metric 'accuracy'; use one of exact_match, contains, regex, token_f1, "
        'or "module:function" for your own, called as function(output, example)'
    )


# check_examples -----------------------------------------------------------------------------------------
def test_check_examples_flags_each_invalid_pattern_with_its_line() -> None:
    examples = [example("ok", line=2), example("(unclosed", line=7), example("fine", "[z-a]", line=9)]
    assert check_examples(examples, "regex", source="dev.jsonl") == [
        "dev.jsonl line 7: expected is not a valid regular expression: '(unclosed' "
        "(missing ), unterminated subpattern at position 0)",
        "dev.jsonl line 9: expected[1] is not a valid regular expression: '[z-a]' "
        "(bad character range z-a at position 1)",
    ]


def test_check_examples_has_nothing_to_say_for_other_metrics() -> None:
    assert check_examples([example("(unclosed")], "exact_match") == []
    assert check_examples([example("(unclosed")], "my_metrics:same") == []

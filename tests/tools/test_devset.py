"""load_examples: a JSON Lines dev set, read from real files; every faulty line reported with its number."""

from __future__ import annotations

import codecs
import json
from pathlib import Path

import pytest

from agent.files import MIB
from tools.devset import DEVSET_LIMIT, MAX_LISTED, DevSetError, Example, load_examples


def write(folder: Path, *lines: str | bytes, name: str = "dev.jsonl") -> Path:
    path = folder / name
    path.write_bytes(b"\n".join(line if isinstance(line, bytes) else line.encode() for line in lines))
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(DevSetError) as caught:
        load_examples(path)
    return caught.value.problems


# A good file --------------------------------------------------------------------------------------------
def test_a_good_file_gives_every_example_with_its_index_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '{"input": "great film", "expected": "positive"}',
        "",
        "   ",
        '{"input": "meh", "expected": ["neutral", "mixed"], "id": 7}',
        '{"input": {"question": "2+2?", "context": "arithmetic"}, "expected": "4"}',
    )
    examples = load_examples(path)
    assert examples == [
        Example(0, 1, "great film", ("positive",), {"input": "great film", "expected": "positive"}),
        Example(1, 4, "meh", ("neutral", "mixed"), {"input": "meh", "expected": ["neutral", "mixed"], "id": 7}),
        Example(
            2,
            5,
            {"question": "2+2?", "context": "arithmetic"},
            ("4",),
            {"input": {"question": "2+2?", "context": "arithmetic"}, "expected": "4"},
        ),
    ]


def test_a_path_may_be_a_string_and_crlf_line_ends_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "dev.jsonl"
    path.write_bytes(b'{"input": "a", "expected": "b"}\r\n{"input": "c", "expected": "d"}\r\n')
    assert [(e.line, e.input) for e in load_examples(str(path))] == [(1, "a"), (2, "c")]


def test_a_bom_on_the_first_line_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, codecs.BOM_UTF8 + b'{"input": "caf\xc3\xa9", "expected": "x"}')
    assert load_examples(path)[0].input == "café"


def test_fields_show_extra_keys_and_the_first_expected_answer(tmp_path: Path) -> None:
    path = write(tmp_path, '{"input": "meh", "expected": ["neutral", "mixed"], "topic": "film"}')
    assert load_examples(path)[0].fields() == {"input": "meh", "expected": "neutral", "topic": "film"}


def test_an_example_with_an_object_input_can_be_hashed(tmp_path: Path) -> None:
    example = load_examples(write(tmp_path, '{"input": {"q": "?"}, "expected": "!"}'))[0]
    assert example in {example}


# The file itself ----------------------------------------------------------------------------------------
def test_a_missing_file_names_the_folder_looked_in(tmp_path: Path) -> None:
    assert problems_of(tmp_path / "dev.jsonl") == [f"dev.jsonl: no such file (looked in {tmp_path})"]


def test_a_device_or_an_oversized_file_is_refused_unread(tmp_path: Path) -> None:
    assert problems_of(Path("/dev/zero")) == ["zero: cannot read it (it is a character device, not a regular file)"]
    with (tmp_path / "dev.jsonl").open("wb") as f:
        f.truncate(DEVSET_LIMIT + MIB)  # sparse: no disk taken
    assert problems_of(tmp_path / "dev.jsonl") == [
        "dev.jsonl: cannot read it (it is 65.0 MiB, more than the 64.0 MiB read here)"
    ]


@pytest.mark.parametrize("content", [b"", b"\n\n  \n", codecs.BOM_UTF8 + b"\n"])
def test_a_file_without_examples_is_refused(tmp_path: Path, content: bytes) -> None:
    assert problems_of(write(tmp_path, content)) == [
        'dev.jsonl: no examples; write one JSON object per line: {"input": "...", "expected": "..."}'
    ]


def test_a_pretty_printed_json_file_is_told_to_be_one_object_per_line(tmp_path: Path) -> None:
    document = json.dumps([{"input": "a", "expected": "b"}, {"input": "c", "expected": "d"}], indent=2)
    assert problems_of(write(tmp_path, document)) == [
        "dev.jsonl: the file is one JSON document spread over several lines; "
        'write one JSON object per line: {"input": "...", "expected": "..."}'
    ]


# Faulty lines -------------------------------------------------------------------------------------------
def test_bytes_that_are_not_utf8_name_the_line_byte_and_column(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '{"input": "a", "expected": "b"}',
        "",
        b'{"input": "caf\xe9", "expected": "x"}',
    )
    assert problems_of(path) == ["dev.jsonl line 3: not UTF-8 text (byte 0xe9 at column 15); save the file as UTF-8"]


def test_the_column_of_a_bad_byte_counts_characters_not_bytes(tmp_path: Path) -> None:
    path = write(tmp_path, b'{"input": "\xc3\xa9\xff"}')
    assert problems_of(path) == ["dev.jsonl line 1: not UTF-8 text (byte 0xff at column 13); save the file as UTF-8"]


def test_invalid_json_gives_the_parser_message_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, '{"input": "a", "expected": "b"}', "{'input': 'a', 'expected': 'b'}")
    assert problems_of(path) == [
        "dev.jsonl line 2: invalid JSON: Expecting property name enclosed in double quotes (column 2)"
    ]


@pytest.mark.parametrize(
    ("line", "kind"),
    [('["a", "b"]', "a list"), ('"a"', "a string"), ("3", "a number"), ("null", "null"), ("true", "a boolean")],
)
def test_a_value_that_is_not_an_object_is_refused(tmp_path: Path, line: str, kind: str) -> None:
    path = write(tmp_path, '{"input": "a", "expected": "b"}', "", "", line)
    assert problems_of(path) == [
        f'dev.jsonl line 4: expected a JSON object such as {{"input": ..., "expected": ...}}, got {kind}'
    ]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"expected": "b"}', 'missing "input" (what the pipeline is given: a string or an object)'),
        ('{"input": null, "expected": "b"}', '"input" is null; give a string or an object'),
        ('{"input": "a"}', 'missing "expected" (the answer, or a list of acceptable answers)'),
        ('{"input": "a", "expected": 42}', '"expected" is a number (42); quote it: "expected": "42"'),
        ('{"input": "a", "expected": true}', '"expected" is a boolean (true); quote it: "expected": "true"'),
        ('{"input": "a", "expected": null}', '"expected" is null; give a string or a list of strings'),
        ('{"input": "a", "expected": {"x": 1}}', '"expected" is an object; give a string or a list of strings'),
        ('{"input": "a", "expected": []}', '"expected" is an empty list; give at least one acceptable answer'),
        ('{"input": "a", "expected": ["b", 2.5]}', '"expected"[1] is a number (2.5); quote it: "2.5"'),
        ('{"input": "a", "expected": ["b", null]}', '"expected"[1] is null; give a string'),
    ],
)
def test_a_wrong_input_or_expected_is_refused_with_its_fix(tmp_path: Path, line: str, problem: str) -> None:
    assert problems_of(write(tmp_path, '{"input": "a", "expected": "b"}', line)) == [f"dev.jsonl line 2: {problem}"]


def test_every_problem_in_the_file_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '{"input": "a", "expected": "b"}',
        "{not json",
        '{"expected": 7}',
        '{"input": "a", "expected": "b"}',
        b'{"input": "\xff"}',
        "[]",
        name="labels.jsonl",
    )
    with pytest.raises(DevSetError) as caught:
        load_examples(path)
    assert caught.value.problems == [
        "labels.jsonl line 2: invalid JSON: Expecting property name enclosed in double quotes (column 2)",
        'labels.jsonl line 3: missing "input" (what the pipeline is given: a string or an object)',
        'labels.jsonl line 3: "expected" is a number (7); quote it: "expected": "7"',
        "labels.jsonl line 5: not UTF-8 text (byte 0xff at column 12); save the file as UTF-8",
        'labels.jsonl line 6: expected a JSON object such as {"input": ..., "expected": ...}, got a list',
    ]
    assert str(caught.value) == "; ".join(caught.value.problems)
    assert isinstance(caught.value, ValueError)


def test_the_message_lists_twenty_problems_and_counts_the_rest(tmp_path: Path) -> None:
    path = write(tmp_path, *(['{"input": "a"}'] * (MAX_LISTED + 5)))
    with pytest.raises(DevSetError) as caught:
        load_examples(path)
    assert len(caught.value.problems) == MAX_LISTED + 5
    listed = str(caught.value).split("; ")
    assert len(listed) == MAX_LISTED + 1
    assert listed[MAX_LISTED - 1].startswith(f"dev.jsonl line {MAX_LISTED}: ")
    assert listed[-1] == "... and 5 more"

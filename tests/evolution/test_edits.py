"""A model's replies read into programs, with replies as models write them: exact and sloppy SEARCH parts,
several blocks, prose and fences around them, CRLF, cut-off replies, whole rewrites; the normal form that
dedupes programs; the diff stored with a candidate."""

from __future__ import annotations

import difflib

import pytest

from agent.errors import TunesmithError
from agent.evolution.edits import (
    FORMAT,
    EditError,
    EditResult,
    SearchReplace,
    apply_edits,
    normalize,
    parse_edits,
    read_reply,
    unified_diff,
)

PROGRAM = '''def mean(xs):
    """The average of xs."""
    total = 0
    for x in xs:
        total += x
    return total / len(xs)


def spread(xs):
    m = mean(xs)
    return max(xs) - min(xs)
'''

METHOD = """    def sort(self, xs):
        out = list(xs)
        out.sort()
        return out
"""


def block(search: str, replace: str, size: int = 7) -> str:
    return f"{'<' * size} SEARCH\n{search}{'=' * size}\n{replace}{'>' * size} REPLACE\n"


# parse_edits


def test_one_block_with_prose_around_it() -> None:
    reply = "I sum with the builtin.\n\n" + block("    total = 0\n", "    total = sum(xs)\n") + "\nThis is faster."
    assert parse_edits(reply) == [SearchReplace("    total = 0\n", "    total = sum(xs)\n")]


def test_no_block_is_no_edit() -> None:
    assert parse_edits("I would use numpy here.") == []


@pytest.mark.parametrize("size", [5, 9])
def test_markers_of_five_to_nine_characters(size: int) -> None:
    assert parse_edits(block("a = 1\n", "a = 2\n", size)) == [SearchReplace("a = 1\n", "a = 2\n")]


def test_crlf_reply() -> None:
    reply = block("a = 1\n", "a = 2\n").replace("\n", "\r\n")
    assert parse_edits(reply) == [SearchReplace("a = 1\n", "a = 2\n")]


def test_fences_around_blocks_and_inside_parts() -> None:
    around = "```python\n" + block("a = 1\n", "a = 2\n") + "```\n"
    inside = block("```python\na = 1\n```\n", "```\na = 2\n```\n")
    assert parse_edits(around) == parse_edits(inside) == [SearchReplace("a = 1\n", "a = 2\n")]


def test_an_empty_replace_part_deletes_and_a_blank_line_is_kept() -> None:
    assert parse_edits(block("a = 1\n", "")) == [SearchReplace("a = 1\n", "")]
    assert parse_edits(block("a = 1\n", "\n")) == [SearchReplace("a = 1\n", "\n")]


def test_a_reply_cut_off_inside_a_block() -> None:
    with pytest.raises(EditError, match=r"ends inside block 2 \(was it cut off\?\)"):
        parse_edits(block("a = 1\n", "a = 2\n") + "<<<<<<< SEARCH\nb = 1\n=======\nb = ")


def test_a_block_without_its_divider() -> None:
    with pytest.raises(EditError, match="block 1 has no '=======' line") as caught:
        parse_edits("<<<<<<< SEARCH\na = 1\n>>>>>>> REPLACE\n")
    assert FORMAT in str(caught.value)


def test_a_block_without_its_end() -> None:
    with pytest.raises(EditError, match="block 1 has no '>>>>>>> REPLACE' line"):
        parse_edits("<<<<<<< SEARCH\na = 1\n=======\na = 2\n" + block("b = 1\n", "b = 2\n"))


def test_edit_error_is_a_tunesmith_error_and_a_value_error() -> None:
    assert issubclass(EditError, TunesmithError) and issubclass(EditError, ValueError)


# apply_edits


def test_an_exact_block() -> None:
    result = apply_edits(PROGRAM, [SearchReplace("    m = mean(xs)\n", "")])
    assert result == EditResult(PROGRAM.replace("    m = mean(xs)\n", ""), 1, [])


def test_trailing_spaces_in_the_search_part() -> None:
    result = apply_edits(PROGRAM, [SearchReplace("    total = 0   \n    for x in xs:\t\n", "    total = 1\n")])
    assert result.text == PROGRAM.replace("    total = 0\n    for x in xs:\n", "    total = 1\n")


def test_less_indented_search_gets_its_replacement_indented() -> None:
    search = "for x in xs:\n    total += x\n"
    replace = "for x in xs:\n    if x > 0:\n        total += x\n"
    result = apply_edits(PROGRAM, [SearchReplace(search, replace)])
    assert result.text == PROGRAM.replace(
        "    for x in xs:\n        total += x\n", "    for x in xs:\n        if x > 0:\n            total += x\n"
    )


def test_more_indented_search_gets_its_replacement_dedented() -> None:
    program = "def f(x):\n    return x\n"
    result = apply_edits(
        program,
        [SearchReplace("        def f(x):\n            return x\n", "        def f(x):\n            return -x\n")],
    )
    assert result.text == "def f(x):\n    return -x\n"


def test_a_different_nesting_is_not_a_match() -> None:
    search = "    for x in xs:\n    total += x\n"  # the loop's body at the loop's depth
    result = apply_edits(PROGRAM, [SearchReplace(search, "    pass\n")])
    assert result.text is None
    assert result.problems == [
        "block 1: its SEARCH part ('for x in xs:'...) is not in the program; each of its lines is in the program, "
        "but not consecutive and indented like this: copy a run of lines"
    ]


def test_a_search_part_not_found_names_the_block_and_the_closest_line() -> None:
    result = apply_edits(
        PROGRAM,
        [SearchReplace("    total = 0\n", "    total = 0.0\n"), SearchReplace("    return total / len(x)\n", "")],
    )
    assert result.text is None and result.applied == 1
    assert result.problems == [
        "block 2: its SEARCH part ('return total / len(x)'...) is not in the program; the program has no line "
        "'return total / len(x)' (the closest is 'return total / len(xs)'): copy the lines exactly from the program"
    ]


def test_a_search_part_with_nothing_close() -> None:
    result = apply_edits(PROGRAM, [SearchReplace("import numpy as np\n", "")])
    assert (
        "'import numpy as np'" in result.problems[0] and "nothing in the program is close to it" in result.problems[0]
    )


def test_an_empty_search_part() -> None:
    result = apply_edits(PROGRAM, [SearchReplace("\n", "import math\n")])
    assert result.text is None and result.problems[0].startswith("block 1: its SEARCH part is empty")


def test_blocks_apply_in_order_each_to_the_result_of_the_ones_before() -> None:
    edits = [
        SearchReplace("    total = 0\n", "    total = 0.0\n"),
        SearchReplace("    total = 0.0\n    for x in xs:\n", "    total = 0.0\n    for x in sorted(xs):\n"),
        SearchReplace("    m = mean(xs)\n", ""),
    ]
    result = apply_edits(PROGRAM, edits)
    assert result.applied == 3 and result.problems == []
    assert result.text == PROGRAM.replace(
        "total = 0\n    for x in xs:", "total = 0.0\n    for x in sorted(xs):"
    ).replace("    m = mean(xs)\n", "")


def test_all_or_nothing_and_every_failed_block_reported() -> None:
    edits = [
        SearchReplace("    total = 0\n", "    total = 0.0\n"),
        SearchReplace("    total = 1\n", ""),
        SearchReplace("    m = mean(xs)\n", ""),
        SearchReplace("    m = median(xs)\n", ""),
    ]
    result = apply_edits(PROGRAM, edits)
    assert result.text is None and result.applied == 2
    assert [problem.split(":")[0] for problem in result.problems] == ["block 2", "block 4"]


def test_a_search_part_found_twice_changes_the_first() -> None:
    program = "a = 0\nprint(a)\nb = 1\nprint(a)\n"
    result = apply_edits(program, [SearchReplace("print(a)\n", "print(a + 1)\n")])
    assert result.text == "a = 0\nprint(a + 1)\nb = 1\nprint(a)\n" and result.problems == []


def test_an_exact_match_wins_over_an_earlier_loose_one() -> None:
    program = "if a:\n    x = 1\nx = 1\n"
    result = apply_edits(program, [SearchReplace("x = 1\n", "x = 2\n")])
    assert result.text == "if a:\n    x = 1\nx = 2\n"


def test_the_programs_crlf_and_missing_final_newline_are_kept() -> None:
    result = apply_edits(
        "a = 1\r\nb = 2", [SearchReplace("a = 1\n", "a = 3\nc = 4\n"), SearchReplace("b = 2\n", "b = 5\n")]
    )
    assert result.text == "a = 3\r\nc = 4\r\nb = 5"


def test_an_indented_region_edited_at_column_zero() -> None:
    result = apply_edits(METHOD, [SearchReplace("out = list(xs)\nout.sort()\nreturn out\n", "return sorted(xs)\n")])
    assert result.text == "    def sort(self, xs):\n        return sorted(xs)\n"


# read_reply


def test_a_reply_with_blocks() -> None:
    reply = (
        "Sum with the builtin.\n```\n"
        + block("    total = 0\n    for x in xs:\n        total += x\n", "    total = sum(xs)\n")
        + "```"
    )
    result = read_reply(PROGRAM, reply, allow_rewrite=False)
    assert result.problems == [] and result.applied == 1
    assert result.text == PROGRAM.replace(
        "    total = 0\n    for x in xs:\n        total += x\n", "    total = sum(xs)\n"
    )


def test_a_malformed_reply_is_a_problem_not_an_error() -> None:
    result = read_reply(PROGRAM, "<<<<<<< SEARCH\n    total = 0\n", allow_rewrite=True)
    assert result.text is None and result.applied == 0 and "cut off" in result.problems[0]


def test_blocks_that_change_nothing() -> None:
    result = read_reply(PROGRAM, block("    total = 0\n", "    total = 0\n"), allow_rewrite=False)
    assert result == EditResult(None, 1, ["the edit changes nothing: it gives back the program shown"])


REWRITE = "def mean(xs):\n    return sum(xs) / len(xs)\n"


def test_a_fenced_whole_rewrite_of_a_short_program() -> None:
    reply = f"The old one:\n```python\n{PROGRAM}```\nThe new one, shorter:\n```python\n{REWRITE}```\nDone."
    assert read_reply(PROGRAM, reply, allow_rewrite=True) == EditResult(REWRITE, 1, [])


def test_an_unfenced_whole_rewrite_of_a_short_program() -> None:
    assert read_reply(PROGRAM, f"\n\n{REWRITE}\n\n", allow_rewrite=True).text == REWRITE


def test_a_rewrite_takes_the_programs_final_newline_and_margin() -> None:
    rewrite = "```python\ndef sort(self, xs):\n    return sorted(xs)\n```"
    assert (
        read_reply(METHOD, rewrite, allow_rewrite=True).text == "    def sort(self, xs):\n        return sorted(xs)\n"
    )
    assert read_reply("x = 1", "```\nx = 2\n```", allow_rewrite=True).text == "x = 2"


def test_a_fenced_rewrite_in_another_language() -> None:
    program = "int add(int a, int b) { return a + b; }\n"
    reply = "```c\nint add(int a, int b) { return b + a; }\n```"
    assert (
        read_reply(program, reply, allow_rewrite=True, language="c").text == "int add(int a, int b) { return b + a; }\n"
    )
    bare = read_reply(program, "int add(int a, int b) { return b + a; }", allow_rewrite=True, language="c")
    assert bare.text is None and "```c fenced block" in bare.problems[0]


@pytest.mark.parametrize("reply", ["Sure", "I would vectorize the loop with numpy.", "Use sum() here: it is faster."])
def test_prose_is_not_a_rewrite(reply: str) -> None:
    result = read_reply(PROGRAM, reply, allow_rewrite=True)
    assert result.text is None
    assert result.problems == [
        f"the reply has no SEARCH/REPLACE block: answer with blocks like\n{FORMAT}\n"
        "or with the whole new program in one ```python fenced block"
    ]


def test_a_rewrite_is_refused_when_not_allowed() -> None:
    result = read_reply(PROGRAM, f"```python\n{REWRITE}```", allow_rewrite=False)
    assert result == EditResult(None, 0, [f"the reply has no SEARCH/REPLACE block: answer with blocks like\n{FORMAT}"])


def test_a_rewrite_that_changes_nothing() -> None:
    result = read_reply(PROGRAM, f"```python\n{PROGRAM}```", allow_rewrite=True)
    assert result.text is None and result.problems == ["the edit changes nothing: it gives back the program shown"]


def test_blocks_win_over_a_fenced_program() -> None:
    reply = f"```python\n{REWRITE}```\n" + block("    m = mean(xs)\n", "")
    assert read_reply(PROGRAM, reply, allow_rewrite=True).text == PROGRAM.replace("    m = mean(xs)\n", "")


# normalize


def test_python_differing_in_comments_layout_and_docstrings_is_equal() -> None:
    other = '''# Statistics.
def mean( xs ):   # the average
    total=0

    for x in xs :
        total += x  # accumulate
    return total/len(
        xs
    )
def spread(xs):
    """How far apart."""
    m = mean(xs)
    return max(xs)-min(xs)
'''
    assert normalize(other) == normalize(PROGRAM)
    assert normalize(PROGRAM) == (
        "def mean ( xs ) :\n  total = 0\n  for x in xs :\n    total += x\n  return total / len ( xs )\n"
        "def spread ( xs ) :\n  m = mean ( xs )\n  return max ( xs ) - min ( xs )"
    )


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("    total = 0\n", "    total = 1\n"),  # a constant
        ("        total += x\n", "    total += x\n"),  # the nesting
        ("    return total / len(xs)\n", "    return total // len(xs)\n"),  # an operator
        ('    """The average of xs."""\n', '    """The average of xs."""\n    print("mean")\n'),  # a statement
        ("    m = mean(xs)\n", "    m = mean(xs); print('m')\n"),
    ],
)
def test_python_with_a_real_change_differs(old: str, new: str) -> None:
    assert normalize(PROGRAM.replace(old, new)) != normalize(PROGRAM)


def test_string_contents_count() -> None:
    assert normalize('print("a  b")\n') != normalize('print("a b")\n')
    assert normalize('print("a # b")\n') != normalize('print("a")\n')


@pytest.mark.parametrize(
    "broken",
    [
        "def f(:\n    return (\n",
        "if x:\n  a = 1\n    b = 2\n   c = 3\n",
        "s = '''never closed\n",
        "x = 1\x00\n",
        "\t\n  \n",
    ],
)
def test_malformed_python_never_raises(broken: str) -> None:
    assert isinstance(normalize(broken), str)


def test_malformed_python_falls_back_to_lines() -> None:
    assert normalize("def f(:  # a comment\n    return   (\n") == "def f(:\nreturn ("
    assert normalize("def f(:\n    return (\n") == normalize("def f(:   # oops\n\n    return (   \n")


def test_c_comments_and_whitespace() -> None:
    a = "int add(int a, int b) {\n    return a + b;  // sum\n}\n"
    b = "// Adds.\nint add(int a,   int b) {\n\n  return a + b;\n}"
    assert normalize(a, "c") == normalize(b, "c") == "int add(int a, int b) {\nreturn a + b;\n}"
    assert normalize(a, "c") != normalize(a.replace("a + b", "a - b"), "c")


def test_comment_markers_inside_strings_are_kept() -> None:
    assert normalize('url = "http://example.com";\n', "javascript") == 'url = "http://example.com";'
    assert normalize('echo "# not a comment"  # a comment\n', "shell") == 'echo "# not a comment"'
    assert normalize("echo $#\n", "shell") == "echo $#"


def test_an_unknown_language_keeps_its_comments() -> None:
    assert normalize("  SELECT 1   -- one\n\n", "sql") == "SELECT 1 -- one"


# unified_diff


def test_unified_diff() -> None:
    after = PROGRAM.replace("    total = 0\n", "    total = 0.0\n")
    diff = unified_diff(PROGRAM, after, "stats.py")
    assert diff.splitlines()[:3] == ["--- a/stats.py", "+++ b/stats.py", "@@ -1,6 +1,6 @@"]
    assert "-    total = 0\n+    total = 0.0\n" in diff
    assert diff == "".join(
        difflib.unified_diff(PROGRAM.splitlines(True), after.splitlines(True), "a/stats.py", "b/stats.py")
    )


def test_unified_diff_of_equal_programs_is_empty() -> None:
    assert unified_diff(PROGRAM, PROGRAM) == ""


def test_unified_diff_marks_a_missing_final_newline() -> None:
    assert unified_diff("x = 1\n", "x = 2") == (
        "--- a/program\n+++ b/program\n@@ -1 +1 @@\n-x = 1\n+x = 2\n\\ No newline at end of file\n"
    )


def test_unified_diff_splits_at_newlines_only() -> None:
    assert unified_diff("a\x0cb\n", "a\x0cc\n") == "--- a/program\n+++ b/program\n@@ -1 +1 @@\n-a\x0cb\n+a\x0cc\n"

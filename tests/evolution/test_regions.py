"""Code locations on real files: a marked region read and spliced back (Python, C, indented inside a class), the
markers' mistakes a user makes (missing, twice, out of order, a typo in the name) and the messages that say how
to fix them, and reading and writing under a folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import TunesmithError
from agent.evolution.regions import (
    CodeLocation,
    RegionError,
    line_comment,
    read_location,
    read_region,
    splice_region,
    write_location,
)

SOLVER = """import math

# tunesmith: begin solve
def solve(xs):
    return sorted(xs)
# tunesmith: end solve


if __name__ == "__main__":
    print(solve([3, 1, 2]))
"""

KERNEL = """#include <stdio.h>

    // tunesmith: begin kernel
int add(int a, int b) { return a + b; }
    // tunesmith: end kernel

int main(void) { return add(1, 2); }
"""

METHOD = """class Sorter:
    # tunesmith: begin sort
    def sort(self, xs):
        return sorted(xs)
    # tunesmith: end sort

    def name(self):
        return "sorter"
"""


def test_read_region_is_the_lines_between_the_markers() -> None:
    assert read_region(SOLVER, "solve") == "def solve(xs):\n    return sorted(xs)\n"


def test_c_markers_with_leading_whitespace() -> None:
    assert read_region(KERNEL, "kernel", file="add.c") == "int add(int a, int b) { return a + b; }\n"


def test_a_region_inside_a_class_keeps_its_indentation() -> None:
    assert read_region(METHOD, "sort") == "    def sort(self, xs):\n        return sorted(xs)\n"


def test_no_region_is_the_whole_text() -> None:
    assert read_region(SOLVER, None) == SOLVER


def test_a_region_name_is_matched_whole() -> None:
    text = "# tunesmith: begin solve2\nx = 2\n# tunesmith: end solve2\n" + SOLVER
    assert read_region(text, "solve") == "def solve(xs):\n    return sorted(xs)\n"
    assert read_region(text, "solve2") == "x = 2\n"


def test_an_empty_region() -> None:
    assert read_region("# tunesmith: begin f\n# tunesmith: end f\n", "f") == ""


@pytest.mark.parametrize(("text", "region"), [(SOLVER, "solve"), (KERNEL, "kernel"), (METHOD, "sort"), (SOLVER, None)])
def test_splicing_the_body_read_gives_back_the_file(text: str, region: str | None) -> None:
    assert splice_region(text, region, read_region(text, region)) == text


def test_splice_replaces_the_body_and_keeps_the_rest() -> None:
    spliced = splice_region(SOLVER, "solve", "def solve(xs):\n    xs.sort()\n    return xs\n")
    assert spliced == SOLVER.replace("    return sorted(xs)\n", "    xs.sort()\n    return xs\n")
    assert read_region(spliced, "solve") == "def solve(xs):\n    xs.sort()\n    return xs\n"


def test_splice_keeps_the_end_marker_on_its_own_line() -> None:
    spliced = splice_region(SOLVER, "solve", "def solve(xs):\n    return xs")
    assert "    return xs\n# tunesmith: end solve\n" in spliced


def test_splice_of_an_empty_body_empties_the_region() -> None:
    spliced = splice_region(METHOD, "sort", "")
    assert spliced.startswith("class Sorter:\n    # tunesmith: begin sort\n    # tunesmith: end sort\n\n")


def test_splice_of_a_whole_file_keeps_its_final_newline() -> None:
    assert splice_region("x = 1\n", None, "x = 2") == "x = 2\n"
    assert splice_region("x = 1", None, "x = 2") == "x = 2"
    assert splice_region("x = 1", None, "x = 2\n") == "x = 2\n"


def test_a_missing_begin_marker_names_the_file_and_shows_the_markers() -> None:
    with pytest.raises(RegionError) as caught:
        read_region(SOLVER, "solver", file="solve.py")
    message = str(caught.value)
    assert "solve.py" in message and "'solver'" in message and "no begin marker" in message
    assert "'# tunesmith: begin solver'" in message and "'# tunesmith: end solver'" in message
    assert "the file marks 'solve'" in message  # a typo in the name shows the names there are


def test_the_markers_shown_follow_the_file_extension() -> None:
    with pytest.raises(RegionError, match="'// tunesmith: begin main'"):
        read_region(KERNEL, "main", file="src/add.c")


def test_a_missing_end_marker() -> None:
    text = SOLVER.replace("# tunesmith: end solve\n", "")
    with pytest.raises(RegionError) as caught:
        read_region(text, "solve", file="solve.py")
    assert str(caught.value).startswith("solve.py, region 'solve': the begin marker (line 3) has no end marker")
    assert "'# tunesmith: end solve'" in str(caught.value)


def test_a_begin_marker_twice() -> None:
    text = SOLVER + "# tunesmith: begin solve\n"
    with pytest.raises(RegionError, match=r"the begin marker is there 2 times \(lines 3, 11\)"):
        read_region(text, "solve", file="solve.py")


def test_an_end_marker_twice() -> None:
    text = SOLVER + "# tunesmith: end solve\n"
    with pytest.raises(RegionError, match=r"the end marker is there 2 times \(lines 6, 11\)"):
        splice_region(text, "solve", "pass\n", file="solve.py")


def test_an_end_before_the_begin() -> None:
    text = "# tunesmith: end f\nx = 1\n# tunesmith: begin f\n"
    with pytest.raises(RegionError, match=r"the end marker \(line 1\) comes before the begin \(line 3\)"):
        read_region(text, "f", file="f.py")


@pytest.mark.parametrize("region", ["", "two words"])
def test_a_region_name_that_cannot_be_marked(region: str) -> None:
    with pytest.raises(RegionError, match="name a region with one word"):
        read_region(SOLVER, region)


def test_region_error_is_a_tunesmith_error_and_a_value_error() -> None:
    assert issubclass(RegionError, TunesmithError) and issubclass(RegionError, ValueError)


def test_line_comment_by_language() -> None:
    assert line_comment("python") == "#" and line_comment("TOML") == "#"
    assert line_comment("rust") == "//" and line_comment("cpp") == "//"
    assert line_comment("cobol") is None


def test_read_and_write_a_location_under_a_folder(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "solve.py").write_text(SOLVER)
    location = CodeLocation("pkg/solve.py", "solve")
    assert read_location(tmp_path, location) == "def solve(xs):\n    return sorted(xs)\n"

    write_location(tmp_path, location, "def solve(xs):\n    return list(reversed(xs))\n")

    written = (tmp_path / "pkg" / "solve.py").read_text()
    assert read_location(tmp_path, location) == "def solve(xs):\n    return list(reversed(xs))\n"
    assert written.startswith("import math\n\n# tunesmith: begin solve\n")
    assert written.endswith("    print(solve([3, 1, 2]))\n")


def test_write_a_whole_file(tmp_path: Path) -> None:
    (tmp_path / "f.py").write_text("x = 1\n")
    write_location(tmp_path, CodeLocation("f.py"), "x = 2")
    assert (tmp_path / "f.py").read_text() == "x = 2\n"


def test_a_missing_file_says_where_it_was_looked_for(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as caught:
        read_location(tmp_path, CodeLocation("slow.py"))
    assert (
        str(caught.value) == f"slow.py: {tmp_path / 'slow.py'} does not exist (a code file is relative to {tmp_path})"
    )
    with pytest.raises(FileNotFoundError):
        write_location(tmp_path, CodeLocation("slow.py"), "x = 1\n")
    assert not (tmp_path / "slow.py").exists()


def test_a_folder_is_not_a_code_file(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    with pytest.raises(IsADirectoryError, match=r"^src: .* is a folder"):
        read_location(tmp_path, CodeLocation("src"))


@pytest.mark.parametrize("file", ["../outside.py", "/etc/hostname", "pkg/../../outside.py"])
def test_a_file_outside_the_folder_is_refused(tmp_path: Path, file: str) -> None:
    (tmp_path / "pkg").mkdir()
    with pytest.raises(RegionError, match="must be a path inside"):
        write_location(tmp_path / "pkg", CodeLocation(file), "x = 1\n")


def test_a_bad_region_in_a_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "solve.py").write_text(SOLVER)
    with pytest.raises(RegionError, match=r"^solve.py, region 'sort': no begin marker"):
        read_location(tmp_path, CodeLocation("solve.py", "sort"))

"""Where a code parameter's program lives: a whole file, or a marked region of one.

A region lets the model rewrite one function of a larger file and leave the rest alone (the imports, the
harness that calls it)::

    # tunesmith: begin solve
    def solve(xs): ...
    # tunesmith: end solve

A marker is a line comment of the file's language (``#`` for Python, shell and TOML; ``//`` for C, C++,
JavaScript, TypeScript, Go, Rust and Java), with any indentation before it, so a region may sit inside a class.
Both comment styles are accepted in every file: a region is found without being told the language, and the
file's extension only chooses how an error message spells the markers.

The region's program is the lines between the two markers, the marker lines excluded: the model never sees
them, so it cannot break them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePath

from agent.errors import TunesmithError

__all__ = [
    "LINE_COMMENTS",
    "CodeLocation",
    "RegionError",
    "line_comment",
    "read_location",
    "read_region",
    "splice_region",
    "write_location",
]

#: The line-comment prefix of each language, by the names a Code parameter's ``language`` takes.
LINE_COMMENTS: dict[str, str] = {
    **dict.fromkeys(["python", "py", "shell", "sh", "bash", "toml", "yaml", "ruby", "r"], "#"),
    **dict.fromkeys(["c", "cpp", "c++", "javascript", "js", "typescript", "ts", "go", "rust", "java"], "//"),
}

#: Languages by file extension, to spell the markers of a file in error messages.
_EXTENSIONS = {
    **dict.fromkeys([".py", ".pyx"], "python"),
    **dict.fromkeys([".sh", ".bash"], "shell"),
    ".toml": "toml",
    **dict.fromkeys([".yaml", ".yml"], "yaml"),
    **dict.fromkeys([".c", ".h"], "c"),
    **dict.fromkeys([".cc", ".cpp", ".cxx", ".hpp", ".cu"], "cpp"),
    **dict.fromkeys([".js", ".mjs", ".cjs"], "javascript"),
    ".ts": "typescript",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
}

_PREFIXES = "|".join(re.escape(prefix) for prefix in sorted(set(LINE_COMMENTS.values()), key=len, reverse=True))
_MARKER = re.compile(rf"(?:{_PREFIXES})\s*tunesmith:\s*(?P<which>begin|end)\s+(?P<name>\S+)")


class RegionError(TunesmithError, ValueError):
    """A code location that cannot be used: its region's markers are missing, repeated or out of order, or its
    file lies outside the folder it is relative to."""


@dataclass(frozen=True)
class CodeLocation:
    """A program's place in a folder: ``file`` (relative to the folder), all of it or its ``region``."""

    file: str
    region: str | None = None


def line_comment(language: str) -> str | None:
    """The line-comment prefix of ``language`` (any case), or None for a language not in :data:`LINE_COMMENTS`."""
    return LINE_COMMENTS.get(language.lower())


def read_region(text: str, region: str | None, *, file: str = "<text>") -> str:
    """The lines between ``region``'s markers in ``text`` (the marker lines excluded), or all of ``text`` when
    ``region`` is None.

    Raises:
        RegionError: the region's begin or end marker is missing, one of them is there twice, or the end comes
            before the begin; the message names ``file`` and shows how to write the markers.
    """
    if region is None:
        return text
    lines = text.splitlines(keepends=True)
    begin, end = _span(lines, region, file)
    return "".join(lines[begin + 1 : end])


def splice_region(text: str, region: str | None, new_body: str, *, file: str = "<text>") -> str:
    """``text`` with ``region``'s body replaced by ``new_body``, the markers kept; all of it when ``region`` is
    None.

    A body that does not end with a newline gets one: in a region the end marker must stay on its own line, and a
    whole file keeps the final newline it had (a model's answer often drops it). Splicing in the body that
    :func:`read_region` returned gives back ``text`` unchanged.

    Raises:
        RegionError: as :func:`read_region`.
    """
    if region is None:
        return new_body + "\n" if text.endswith("\n") and new_body and not new_body.endswith("\n") else new_body
    lines = text.splitlines(keepends=True)
    begin, end = _span(lines, region, file)
    body = new_body + "\n" if new_body and not new_body.endswith("\n") else new_body
    return "".join([*lines[: begin + 1], body, *lines[end:]])


def read_location(base: Path, location: CodeLocation) -> str:
    """The program at ``location``, a file under ``base``.

    Raises:
        FileNotFoundError: no such file under ``base`` (IsADirectoryError: a folder).
        RegionError: the file is outside ``base``, or its region is not marked as it should be.
    """
    return read_region(_path(base, location).read_text(encoding="utf-8"), location.region, file=location.file)


def write_location(base: Path, location: CodeLocation, body: str) -> None:
    """Put ``body`` at ``location`` under ``base``: the whole file, or its region with the rest of the file kept.

    ``base`` is meant to be a fresh copy of the objective's folder, so a candidate never touches the user's own
    files; that is also why ``location.file`` must not lead out of ``base``.

    Raises:
        FileNotFoundError: no such file under ``base`` (IsADirectoryError: a folder). A whole file is replaced,
            but must exist too: a missing one means a wrong path, not a new file.
        RegionError: as :func:`read_location`.
    """
    path = _path(base, location)
    text = path.read_text(encoding="utf-8")
    path.write_text(splice_region(text, location.region, body, file=location.file), encoding="utf-8")


def _path(base: Path, location: CodeLocation) -> Path:
    """The file of ``location`` under ``base``, checked to stay inside it and to exist."""
    relative = PurePath(location.file)
    if relative.is_absolute() or ".." in relative.parts:
        raise RegionError(
            f"{location.file}: a code file must be a path inside {base} (no absolute path, no '..'): the program is "
            "written into a copy of that folder"
        )
    path = base / relative
    if path.is_dir():
        raise IsADirectoryError(f"{location.file}: {path} is a folder: a code location names a file")
    if not path.is_file():
        raise FileNotFoundError(f"{location.file}: {path} does not exist (a code file is relative to {base})")
    return path


def _span(lines: list[str], region: str, file: str) -> tuple[int, int]:
    """The indices of ``region``'s begin and end marker lines in ``lines``."""
    if not region or any(c.isspace() for c in region):
        raise RegionError(f"{file}: region {region!r} cannot be marked: name a region with one word, like 'solve'")
    begins: list[int] = []
    ends: list[int] = []
    others: dict[str, None] = {}
    for index, line in enumerate(lines):
        marker = _MARKER.fullmatch(line.strip())
        if marker is None:
            continue
        if marker["name"] == region:
            (begins if marker["which"] == "begin" else ends).append(index)
        else:
            others[marker["name"]] = None
    comment = line_comment(_EXTENSIONS.get(PurePath(file).suffix.lower(), "python")) or "#"
    begin_line, end_line = f"'{comment} tunesmith: begin {region}'", f"'{comment} tunesmith: end {region}'"
    how = f"put a line {begin_line} above the region's code and a line {end_line} below it"
    where = f"{file}, region {region!r}"
    if not begins:
        marked = f" (the file marks {', '.join(map(repr, others))})" if others else ""
        raise RegionError(f"{where}: no begin marker{marked}: {how}")
    if not ends:
        raise RegionError(f"{where}: the begin marker (line {begins[0] + 1}) has no end marker: {how}")
    for name, found in (("begin", begins), ("end", ends)):
        if len(found) > 1:
            at = ", ".join(str(index + 1) for index in found)
            raise RegionError(
                f"{where}: the {name} marker is there {len(found)} times (lines {at}): mark a region once: {how}"
            )
    if ends[0] < begins[0]:
        raise RegionError(
            f"{where}: the end marker (line {ends[0] + 1}) comes before the begin (line {begins[0] + 1}): {how}"
        )
    return begins[0], ends[0]

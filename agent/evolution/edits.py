"""A model's answer turned into a new program, and the forms that compare and show programs.

The model answers with SEARCH/REPLACE blocks, the merge-conflict look-alike that OpenEvolve and Aider use and
that models write well::

    <<<<<<< SEARCH
    lines copied from the program
    =======
    the lines that replace them
    >>>>>>> REPLACE

Models copy code imperfectly, so reading is lenient where the intent is still unambiguous: prose and code
fences around the blocks, 5 to 9 marker characters, CRLF line ends, trailing spaces and a uniformly shifted
indentation in a SEARCH part. Applying is strict where leniency would change the meaning: a reply whose blocks
do not all apply gives no program at all, since half an edit is a program the model never meant.

:func:`normalize` gives the form in which two programs that differ only in comments and layout are equal, so
that the same program is not evaluated twice; :func:`unified_diff` the diff stored with each candidate.
"""

from __future__ import annotations

import ast
import difflib
import io
import os
import re
import textwrap
import tokenize
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

from agent.display import cut
from agent.errors import TunesmithError
from agent.evolution.regions import line_comment

__all__ = [
    "FORMAT",
    "EditError",
    "EditResult",
    "SearchReplace",
    "apply_edits",
    "normalize",
    "parse_edits",
    "read_reply",
    "unified_diff",
]

#: The block format, as error messages show it to the model.
FORMAT = "<<<<<<< SEARCH\nlines copied exactly from the program\n=======\nthe lines that replace them\n>>>>>>> REPLACE"

# Marker lines, matched against a stripped line.
_SEARCH = re.compile(r"<{5,9}\s*SEARCH")
_DIVIDER = re.compile(r"={5,9}")
_REPLACE = re.compile(r">{5,9}\s*REPLACE")
_FENCE = re.compile(r"```[\w+#.-]*")
#: A fenced code block; its body is group 1.
_FENCED = re.compile(r"^[ \t]*```[\w+#.-]*[ \t]*\n(.*?)^[ \t]*```[ \t]*$", re.MULTILINE | re.DOTALL)

_PYTHON = frozenset({"python", "py", "python3"})

#: Characters of a program line quoted in a problem.
_QUOTED = 80


class EditError(TunesmithError, ValueError):
    """A reply whose SEARCH/REPLACE blocks are malformed: a divider or an end marker is missing."""


@dataclass(frozen=True)
class SearchReplace:
    """One block: the ``search`` lines of the program are to be replaced by the ``replace`` lines.

    Each part is its lines, each ending with a newline, so that ``""`` (no lines: the block deletes) and
    ``"\\n"`` (one blank line) differ.
    """

    search: str
    replace: str


@dataclass(frozen=True)
class EditResult:
    """What a reply makes of a program.

    Attributes:
        text: the new program; None when any block failed (or the reply held no edit), and then ``problems``
            says why, in words meant for the model's next attempt.
        applied: how many blocks applied (1 for a whole rewrite), counting those before and after a failed one.
        problems: what went wrong, one entry per failed block.
    """

    text: str | None
    applied: int
    problems: list[str] = field(default_factory=list)


def parse_edits(reply: str) -> list[SearchReplace]:
    """The SEARCH/REPLACE blocks of ``reply``, in order; ``[]`` when it has none.

    Lines outside the blocks (prose, code fences) are ignored; a fence line just inside a part (a model that
    fenced the code of each part) is dropped.

    Raises:
        EditError: a block lacks its ``=======`` divider or its ``>>>>>>> REPLACE`` line (a reply cut off by the
            token limit ends that way), or a new block starts inside one.
    """
    edits: list[SearchReplace] = []
    search: list[str] | None = None
    replace: list[str] | None = None
    for line in reply.replace("\r\n", "\n").split("\n"):
        marker = line.strip()
        if search is None:
            if _SEARCH.fullmatch(marker):
                search = []
        elif replace is None:
            if _DIVIDER.fullmatch(marker):
                replace = []
            elif _SEARCH.fullmatch(marker) or _REPLACE.fullmatch(marker):
                raise EditError(
                    f"block {len(edits) + 1} has no '=======' line after its SEARCH part; write each block as\n{FORMAT}"
                )
            else:
                search.append(line)
        elif _REPLACE.fullmatch(marker):
            edits.append(SearchReplace(_part(search), _part(replace)))
            search = replace = None
        elif _SEARCH.fullmatch(marker):
            raise EditError(f"block {len(edits) + 1} has no '>>>>>>> REPLACE' line; write each block as\n{FORMAT}")
        else:
            replace.append(line)
    if search is not None:
        raise EditError(
            f"the reply ends inside block {len(edits) + 1} (was it cut off?): end each block with '>>>>>>> REPLACE'"
        )
    return edits


def apply_edits(program: str, edits: Sequence[SearchReplace]) -> EditResult:
    """``program`` with ``edits`` applied in order, each to the result of the ones before.

    A SEARCH part is looked for as whole lines: first exactly, then ignoring trailing whitespace and a uniform
    shift of indentation (the program's lines are the SEARCH lines indented more, or less, by the same
    whitespace); a match found that way has its REPLACE lines shifted the same way, so they fit the program.
    A SEARCH that occurs several times is applied to its first occurrence: the model read the program from
    the top, and refusing would waste a reply that is most likely right.

    All or nothing: when any block fails, ``text`` is None and ``problems`` names each failed block with a hint.
    The program's line ends (LF or CRLF) and its final newline are kept.
    """
    newline = _newline(program)
    lines = _lines(program.replace("\r\n", "\n"))
    problems: list[str] = []
    for number, edit in enumerate(edits, 1):
        search = _lines(edit.search)
        if not any(line.strip() for line in search):
            problems.append(
                f"block {number}: its SEARCH part is empty: copy the lines to change from the program, and give "
                "them changed in the REPLACE part"
            )
            continue
        found = _find(lines, search)
        if found is None:
            first = next(line.strip() for line in search if line.strip())
            problems.append(
                f"block {number}: its SEARCH part ({_quote(first)}...) is not in the program; {_hint(lines, search)}"
            )
            continue
        start, (remove, add) = found
        lines[start : start + len(search)] = [_reindent(line, remove, add) for line in _lines(edit.replace)]
    if problems:
        return EditResult(None, len(edits) - len(problems), problems)
    text = "\n".join(lines) + ("\n" if lines and program.endswith("\n") else "")
    return EditResult(text.replace("\n", newline), len(edits))


def read_reply(program: str, reply: str, *, allow_rewrite: bool, language: str = "python") -> EditResult:
    """The program a model's ``reply`` makes of ``program``: what the ``evolve`` proposer evaluates.

    SEARCH/REPLACE blocks when the reply has any (:func:`apply_edits`). Otherwise, when ``allow_rewrite`` (a
    program short enough to be rewritten whole), the whole new program: the reply's last fenced code block (a
    model that shows the old code first shows the new one last), or the whole reply when it is Python code
    (it parses, and is more than a lone expression such as a word of prose). A bare reply in another language
    is not taken: prose and code cannot be told apart reliably there, so the rewrite must be fenced.

    A reply that gives back ``program`` unchanged is a problem too: evaluating it again would teach nothing.
    """
    try:
        edits = parse_edits(reply)
    except EditError as exc:
        return EditResult(None, 0, [str(exc)])
    if edits:
        result = apply_edits(program, edits)
    else:
        rewrite = _rewrite(reply, language) if allow_rewrite else None
        if rewrite is None:
            whole = f"\nor with the whole new program in one ```{language} fenced block" if allow_rewrite else ""
            return EditResult(
                None, 0, [f"the reply has no SEARCH/REPLACE block: answer with blocks like\n{FORMAT}{whole}"]
            )
        result = EditResult(_shaped_like(program, rewrite), 1)
    if result.text == program:
        return EditResult(None, result.applied, ["the edit changes nothing: it gives back the program shown"])
    return result


def normalize(code: str, language: str = "python") -> str:
    """``code`` in a form that is equal for two programs differing only in comments and layout.

    Python (``language`` "python", "py" or "python3") is compared token by token: comments, blank lines,
    line continuations, statements that are a lone string (docstrings) and the width of whitespace are dropped;
    the tokens' text (string contents, how a number is spelled), the line breaks between statements and the
    nesting depth are kept, so any change in behaviour shows.

    Other languages are compared line by line: the language's line comment
    (:data:`agent.evolution.regions.LINE_COMMENTS`; outside quotes, and for ``#`` only at the start of a word),
    leading and trailing whitespace and blank lines are dropped, and each run of whitespace becomes one space. A
    language with no known comment keeps its comments.

    Never raises: Python that does not tokenize (a model's broken program) is compared by the line rules, with
    ``#`` comments.
    """
    if language.lower() in _PYTHON:
        try:
            return _normalize_python(code)
        except (tokenize.TokenError, SyntaxError, ValueError):
            return _normalize_lines(code, "#")
    return _normalize_lines(code, line_comment(language))


def unified_diff(before: str, after: str, name: str = "program") -> str:
    """The unified diff from ``before`` to ``after``, as ``git diff`` shows it (``a/NAME``, ``b/NAME``, 3 lines of
    context, ``\\ No newline at end of file`` where a last line has none); ``""`` when they are equal."""
    diff = difflib.unified_diff(_keepends(before), _keepends(after), f"a/{name}", f"b/{name}")
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in diff)


def _part(lines: list[str]) -> str:
    """A block's part from its lines, without a fence line at its edges."""
    if lines and _FENCE.fullmatch(lines[0].strip()):
        lines = lines[1:]
    if lines and _FENCE.fullmatch(lines[-1].strip()):
        lines = lines[:-1]
    return "".join(line + "\n" for line in lines)


def _lines(text: str) -> list[str]:
    """``text``'s lines without their ends; a final newline ends the last line rather than starting one more."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def _keepends(text: str) -> list[str]:
    """``text``'s lines with their ends, split at ``\\n`` only (``str.splitlines`` also splits at form feeds)."""
    return re.findall(r"[^\n]*\n|[^\n]+", text)


def _newline(program: str) -> str:
    return "\r\n" if "\r\n" in program else "\n"


def _shaped_like(program: str, rewrite: str) -> str:
    """``rewrite`` with ``program``'s margin, line ends and final newline, which a model's answer does not keep
    (a region inside a class is indented; the model's rewrite of it in a fence usually is not)."""
    margin = _margin(program)
    if _margin(rewrite) != margin:
        rewrite = textwrap.indent(textwrap.dedent(rewrite), margin)
    final = "\n" if program.endswith("\n") else ""
    return (rewrite.rstrip("\n") + final).replace("\n", _newline(program))


def _margin(text: str) -> str:
    """The indentation all of ``text``'s non-blank lines share."""
    indents = [_indent(line) for line in _lines(text) if line.strip()]
    return os.path.commonprefix(indents)  # noqa: RUF071 (a character prefix is what is wanted: not paths)


def _find(lines: list[str], search: list[str]) -> tuple[int, tuple[str, str]] | None:
    """Where ``search`` first occurs in ``lines`` (exactly if it can, else loosely), and the indentation shift
    ``(remove, add)`` that turns a SEARCH line into the program's."""
    starts = range(len(lines) - len(search) + 1)
    for start in starts:
        if lines[start : start + len(search)] == search:
            return start, ("", "")
    for start in starts:
        shift = _shift(lines[start : start + len(search)], search)
        if shift is not None:
            return start, shift
    return None


def _shift(found: list[str], search: list[str]) -> tuple[str, str] | None:
    """``(remove, add)`` when each of ``found`` is the matching SEARCH line, trailing whitespace aside, with the
    leading ``remove`` of its indentation replaced by ``add`` (one of them empty); None when they differ
    otherwise, or not by one shift (a different nesting is a different program)."""
    shift: tuple[str, str] | None = None
    for have, want in zip(found, search, strict=True):
        if have.strip() != want.strip():
            return None
        if not want.strip():
            continue
        here, there = _indent(have), _indent(want)
        if here.endswith(there):
            line_shift = ("", here[: len(here) - len(there)])
        elif there.endswith(here):
            line_shift = (there[: len(there) - len(here)], "")
        else:
            return None
        if shift is None:
            shift = line_shift
        elif shift != line_shift:
            return None
    return shift


def _reindent(line: str, remove: str, add: str) -> str:
    """A REPLACE line shifted as its SEARCH part was; blank lines stay as they are."""
    if not line.strip():
        return line
    return add + (line[len(remove) :] if line.startswith(remove) else line.lstrip())


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _hint(lines: list[str], search: list[str]) -> str:
    """Why ``search`` was not found, pointing at the first of its lines the program lacks."""
    present = {line.strip() for line in lines if line.strip()}
    for line in search:
        if line.strip() and line.strip() not in present:
            close = difflib.get_close_matches(line.strip(), present, n=1)
            near = f"the closest is {_quote(close[0])}" if close else "nothing in the program is close to it"
            return f"the program has no line {_quote(line.strip())} ({near}): copy the lines exactly from the program"
    return "each of its lines is in the program, but not consecutive and indented like this: copy a run of lines"


def _quote(line: str) -> str:
    return repr(cut(line, _QUOTED))


def _rewrite(reply: str, language: str) -> str | None:
    """The whole new program a reply gives, or None when it gives none."""
    reply = reply.replace("\r\n", "\n")
    fenced = _FENCED.findall(reply)
    if fenced:
        return str(fenced[-1])
    code = re.sub(r"\A(?:[ \t]*\n)+", "", reply)  # blank lines before the code; its indentation counts
    return code if language.lower() in _PYTHON and _is_python(code) else None


def _is_python(text: str) -> bool:
    """Whether ``text`` (dedented: a region may sit inside a class) is Python with a statement in it, not just a
    lone expression (``Sure`` parses as one)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SyntaxWarning for an invalid escape in a string is not our concern
            tree = ast.parse(textwrap.dedent(text))
    except (SyntaxError, ValueError, RecursionError):
        return False
    return any(not isinstance(node, ast.Expr) for node in tree.body)


def _normalize_python(code: str) -> str:
    """The token form of :func:`normalize`; raises what :mod:`tokenize` raises on broken code."""
    statements: list[str] = []
    depth = 0
    tokens: list[tokenize.TokenInfo] = []
    for token in tokenize.generate_tokens(io.StringIO(code).readline):
        if token.type == tokenize.INDENT:
            depth += 1
        elif token.type == tokenize.DEDENT:
            depth -= 1
        elif token.type in (tokenize.NEWLINE, tokenize.ENDMARKER):
            if any(t.type != tokenize.STRING for t in tokens):
                statements.append("  " * depth + " ".join(t.string for t in tokens))
            tokens = []
        elif token.type not in (tokenize.COMMENT, tokenize.NL):
            tokens.append(token)
    return "\n".join(statements)


def _normalize_lines(code: str, comment: str | None) -> str:
    """The line form of :func:`normalize`."""
    kept = []
    for line in code.replace("\r\n", "\n").split("\n"):
        words = (line if comment is None else _without_comment(line, comment)).split()
        if words:
            kept.append(" ".join(words))
    return "\n".join(kept)


def _without_comment(line: str, comment: str) -> str:
    """``line`` up to its ``comment``, skipping quoted text; ``#`` must start a word, as in shell and YAML
    (``$#`` is no comment). Quotes are followed within the line only: a string spanning lines is rare enough."""
    quote = ""
    index = 0
    while index < len(line):
        char = line[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = ""
        elif char in "\"'`":
            quote = char
        elif line.startswith(comment, index) and (comment != "#" or index == 0 or line[index - 1].isspace()):
            return line[:index]
        index += 1
    return line

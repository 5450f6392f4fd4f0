"""Every example in README.md, run as written, so that the README cannot drift from the code.

The fenced blocks are found by their info string:

- ``python``: each block alone, as a script in a fresh temporary folder, with this interpreter.
- ``toml``: a block with ``[study]`` is a job file: written as ``job.toml`` beside the helper files of
  ``examples/readme/`` (its ``train.py``), checked with :func:`agent.jobfile.load_job` and run with the real
  command, ``tunesmith run job.toml``. Other ``toml`` blocks must be valid TOML.
- ``bash`` and ``console`` (commands after ``$ ``): each ``tunesmith ...`` line is run (split with
  :func:`shlex.split`, no shell) in the folder where the README's first job file was run, and must exit 0.
  Every other line must match :data:`NOT_RUN`, the set-up and benchmark commands that take minutes or that
  CI runs itself; a new kind of command fails here until it is handled.
- ``text``: not code (diagrams, output).

A fence with another info string, or none, fails :func:`test_every_fence_is_handled`.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tokenize
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
#: Files a README job file needs beside it (its train.py).
HELPERS = REPO / "examples" / "readme"
#: ``tunesmith`` is ``[project.scripts] tunesmith = "agent.cli:main"``; this runs the checkout's copy of it.
TUNESMITH = [sys.executable, "-m", "agent.cli"]
TIMEOUT_S = 120
#: Trials a README job may ask for: the test runs it whole.
MAX_JOB_TRIALS = 10

KINDS = {"python", "toml", "bash", "console", "json", "text"}
SHELL_KINDS = {"bash", "console"}
#: Shell lines that are shown, not run: line pattern -> why.
NOT_RUN = {
    r"make(\s|$)": "set-up from nothing, the test suite and benchmarks: minutes each, and what CI runs",
    r"pip(\s|$)": "installs packages",
    r"\.venv/bin/python -m evals\.": "a benchmark: minutes",
    r'eval "\$\(\.ci/postgres\.sh start\)"': "starts a PostgreSQL server",
}
RUN = r"tunesmith(\s|$)"


@dataclass(frozen=True)
class Block:
    kind: str
    code: str
    line: int  # of the opening fence, 1-based
    section: str
    number: int  # within its section, from 1

    @property
    def id(self) -> str:
        return f"{self.section} #{self.number} ({self.kind})"

    @property
    def where(self) -> str:
        return f"README.md:{self.line} ({self.section} #{self.number})"


_FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)[^`]*$")


def readme_blocks(text: str) -> list[Block]:
    """The fenced code blocks of a Markdown text, with the heading they are under."""
    blocks: list[Block] = []
    section, counts = "top", dict[str, int]()
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        match = _FENCE.match(line)
        if match is None:
            if heading := re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line):
                section = heading.group(1)
            i += 1
            continue
        fence = match.group("fence")
        close = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        end = i + 1
        while end < len(lines) and not close.match(lines[end]):
            end += 1
        counts[section] = counts.get(section, 0) + 1
        code = "\n".join(lines[i + 1 : end]) + "\n"
        blocks.append(Block(match.group("info").lower(), code, i + 1, section, counts[section]))
        i = end + 1
    return blocks


def is_job(block: Block) -> bool:
    """A complete job file: a ``toml`` block with ``[study]`` (invalid TOML is reported by its own test)."""
    try:
        return block.kind == "toml" and "study" in tomllib.loads(block.code)
    except tomllib.TOMLDecodeError:
        return False


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))
JOBS = [b for b in BLOCKS if is_job(b)]


def _of(*kinds: str) -> list[object]:
    return [pytest.param(b, id=b.id) for b in BLOCKS if b.kind in kinds]


def _env() -> dict[str, str]:
    """This environment, with the checkout first on the import path: the README is checked against this code."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(REPO) + (os.pathsep + path if path else "")}


def _run(argv: list[str], cwd: Path, where: str) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(
            argv, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{where}: {shlex.join(argv)} still running after {TIMEOUT_S}s; README examples must be quick")
    assert done.returncode == 0, (
        f"{where}: {shlex.join(argv)} exited {done.returncode}\n"
        f"--- stdout ---\n{done.stdout[-4000:]}\n--- stderr ---\n{done.stderr[-4000:]}"
    )
    return done


# The parser and the fence kinds ---------------------------------------------------------------------------
def test_parser_finds_fences_headings_and_info_strings() -> None:
    text = "# Title\n```bash\nmake demo\n```\n## Part two\n\n````python\nx = '```'\n````\n```\nplain\n```\n"
    blocks = readme_blocks(text)
    assert [(b.kind, b.section, b.number, b.line) for b in blocks] == [
        ("bash", "Title", 1, 2),
        ("python", "Part two", 1, 7),
        ("", "Part two", 2, 10),
    ]
    assert blocks[1].code == "x = '```'\n"


def test_every_fence_is_handled() -> None:
    unknown = [f"{b.where}: ```{b.kind}" for b in BLOCKS if b.kind not in KINDS]
    assert not unknown, (
        f"fences this test does not know how to check: {unknown}; give each an info string it runs "
        f"({', '.join(sorted(KINDS - {'text'}))}), or `text` for what is not code, or teach tests/test_readme.py"
    )
    assert {"python", "toml", "bash"} <= {b.kind for b in BLOCKS}, "README examples went missing"


@pytest.mark.parametrize("block", _of("json"))
def test_json_blocks_parse(block: Block) -> None:
    """A configuration a reader pastes (an MCP client's) must at least be JSON."""
    json.loads(block.code)


def test_tunesmith_is_agent_cli_main() -> None:
    """The commands run ``python -m agent.cli``: that must be the program ``tunesmith`` is."""
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["tunesmith"] == "agent.cli:main"


# python ---------------------------------------------------------------------------------------------------
def _strings(code: str) -> list[str]:
    tokens = tokenize.generate_tokens(io.StringIO(code).readline)
    return [t.string.strip("\"'") for t in tokens if t.type == tokenize.STRING]


@pytest.mark.slow  # a new process running the example: part of make test-all and CI
@pytest.mark.parametrize("block", _of("python"))
def test_python_example(block: Block, tmp_path: Path) -> None:
    assert "local" not in _strings(block.code), (
        f'{block.where}: model="local" starts the local model, too slow for a test: use model=None '
        '(show "local" in a comment)'
    )
    script = tmp_path / "readme_example.py"
    script.write_text(block.code)
    _run([sys.executable, script.name], tmp_path, block.where)


# toml -----------------------------------------------------------------------------------------------------
def _prepare_job(block: Block, folder: Path) -> Path:
    for helper in HELPERS.iterdir():
        if helper.is_file():
            shutil.copy(helper, folder / helper.name)
    job_file = folder / "job.toml"
    job_file.write_text(block.code)
    return job_file


def _run_job(block: Block, folder: Path) -> None:
    from agent.jobfile import JobFileError, load_job
    from agent.study import load_study

    job_file = _prepare_job(block, folder)
    try:
        job = load_job(job_file)
    except JobFileError as exc:
        pytest.fail(f"{block.where}: the job file is refused:\n  " + "\n  ".join(exc.problems))
    assert job.config.search.model is None, (
        f"{block.where}: model = {job.config.search.model} would be started by the test; comment it out"
    )
    trials = job.budget.trials
    assert trials is not None and trials <= MAX_JOB_TRIALS, (
        f"{block.where}: [budget] trials = {trials}; the test runs the job whole, keep it at most {MAX_JOB_TRIALS}"
    )
    _run([*TUNESMITH, "run", job_file.name], folder, block.where)

    study = load_study(job.config.name, job.storage_url)
    try:
        states = [t.state.value for t in study.trials]
        assert states == ["complete"] * trials, f"{block.where}: trials {states}: {[t.error for t in study.trials]}"
        enqueued = [dict(t.params) for t in study.trials[: len(job.enqueue)]]
        assert enqueued == [{**job.space.defaults(), **p} for p in job.enqueue]
    finally:
        study.close()


@pytest.fixture(scope="module")
def job_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder where the README's first job file was run: what its ``tunesmith`` commands are run against."""
    assert JOBS, "README.md has tunesmith commands but no job file ([study]) to run them against"
    folder = tmp_path_factory.mktemp("readme-job")
    _run_job(JOBS[0], folder)
    return folder


@pytest.mark.slow  # a new process running the example: part of make test-all and CI
@pytest.mark.parametrize("block", _of("toml"))
def test_toml_example(block: Block, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    try:
        tomllib.loads(block.code)
    except tomllib.TOMLDecodeError as exc:
        pytest.fail(f"{block.where}: not valid TOML: {exc}")
    if JOBS and block == JOBS[0]:
        request.getfixturevalue("job_folder")  # runs and checks it once for this test and the shell examples
    elif block in JOBS:
        _run_job(block, tmp_path)


# bash / console -------------------------------------------------------------------------------------------
def shell_commands(block: Block) -> list[str]:
    """The commands of a shell block: continuation lines joined, comments and blank lines left out; in a
    ``console`` block only the lines after a ``$`` prompt (the others are output)."""
    lines: list[str] = []
    pending = ""
    for raw in block.code.splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        if block.kind == "console":
            if not line.startswith("$"):
                continue
            line = line[1:].strip()
        if line and not line.startswith("#"):
            lines.append(line)
    if pending.strip():
        lines.append(pending.strip())
    return lines


def test_shell_commands_are_read_as_written() -> None:
    bash = Block("bash", "make demo   # set-up\n# a comment\n\ntunesmith status \\\n  --json\n", 1, "x", 1)
    assert shell_commands(bash) == ["make demo   # set-up", "tunesmith status --json"]
    console = Block("console", '$ tunesmith best s\n{"study": "s"}\n', 1, "x", 1)
    assert shell_commands(console) == ["tunesmith best s"]
    assert re.match(RUN, "tunesmith --version") and not re.match(RUN, "tunesmithx")
    assert any(re.match(p, ".venv/bin/python -m evals.run --suite synthetic") for p in NOT_RUN)
    assert not any(re.match(p, "makefile-gen") for p in NOT_RUN)


@pytest.mark.slow  # a new process running the example: part of make test-all and CI
@pytest.mark.parametrize("block", _of(*SHELL_KINDS))
def test_shell_example(block: Block, request: pytest.FixtureRequest) -> None:
    commands = shell_commands(block)
    unhandled = [c for c in commands if not re.match(RUN, c) and not any(re.match(p, c) for p in NOT_RUN)]
    assert not unhandled, (
        f"{block.where}: commands this test neither runs nor knows to leave out: {unhandled}; run them here "
        "(tests/test_readme.py) or add them to NOT_RUN with the reason"
    )
    runs = [c for c in commands if re.match(RUN, c)]
    if not runs:
        return
    folder: Path = request.getfixturevalue("job_folder")
    for command in runs:
        argv = shlex.split(command, comments=True)
        shell = [a for a in argv if a in {"|", "||", "&&", ";", ">", ">>", "<", "&"}]
        assert not shell, f"{block.where}: {command!r}: these lines run without a shell, so {shell} cannot work"
        _run([*TUNESMITH, *argv[1:]], folder, f"{block.where}: {command!r}")

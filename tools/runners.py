"""Where a command objective's processes run: in the objective's folder, or in a sandbox made for one candidate.

A command and its cascade stages (cheap checks before it) run one after another in the same place, so a
place is opened once per evaluation (:func:`open_place`) and runs each command line to an :class:`Outcome`:
the exit status (None at the timeout), the ends of stdout and stderr, and the seconds taken. The command
evaluator reads outcomes the same way wherever they ran.

* :class:`Folder` runs in a folder as it is (the user's own code, trusted like any script they run).
* :class:`SandboxPlace` runs in a fresh copy of the folder under limits (:mod:`tools.sandbox`): a command
  that is itself untrusted (``sandbox = true`` without Code parameters).
* :class:`EvaluatorPlace` is for generated code: the user's evaluator runs in the folder as it is, trusted,
  and the candidate (its code written into a sandboxed copy) runs only when the evaluator starts it through
  :mod:`tools.candidate`, apart from the evaluator, its files and its result channel.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tools.candidate import CANDIDATE_ENV
from tools.evaluation import tail
from tools.processes import TOKEN_ENV, TrialWorkspace, child_preexec, read_tail, wait_contained
from tools.sandbox import Limits, Sandbox

#: Only the end of a command's stdout is searched for its result.
STDOUT_TAIL_BYTES = 1 << 20
#: Of stderr, what is kept as feedback.
STDERR_TAIL_BYTES = 8192


@dataclass(frozen=True)
class Outcome:
    """How one command line ended.

    Attributes:
        returncode: the exit status (negative: killed by that signal); None when it was killed at its timeout.
        stdout: the end of what it printed on stdout.
        stderr: the end of what it printed on stderr, cut for feedback.
        seconds: wall-clock time it took.
        notes: what the place could not enforce (a sandbox without network isolation), for the trial's record.
    """

    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    notes: tuple[str, ...] = ()


#: The candidate's parameters as JSON (``{params_file}``), in a sandboxed copy.
PARAMS_NAME = ".tunesmith-params.json"


class Place(Protocol):
    """Runs command lines for one evaluation; ``folder`` is their working directory, ``params_file`` the JSON
    file of the candidate's parameters they may read, ``candidate_dir`` the folder holding the candidate's code
    (``{candidate_dir}``)."""

    @property
    def folder(self) -> Path: ...

    @property
    def candidate_dir(self) -> Path: ...

    @property
    def params_file(self) -> Path: ...

    def run(self, argv: Sequence[str], timeout_s: float | None, env: Mapping[str, str]) -> Outcome: ...


class Folder:
    """Runs in ``folder`` itself; the trial's workspace holds the output files and gives the trial token."""

    def __init__(self, folder: Path, workspace: TrialWorkspace, params_json: str) -> None:
        self._folder = folder
        self._workspace = workspace
        self._runs = 0
        self.params_file.write_text(params_json)

    @property
    def folder(self) -> Path:
        return self._folder

    @property
    def candidate_dir(self) -> Path:
        return self._folder

    @property
    def params_file(self) -> Path:
        return self._workspace.folder / "params.json"  # not in the user's folder, where trials would share it

    def run(self, argv: Sequence[str], timeout_s: float | None, env: Mapping[str, str]) -> Outcome:
        self._runs += 1
        stdout_path = self._workspace.folder / f"stdout-{self._runs}"
        stderr_path = self._workspace.folder / f"stderr-{self._runs}"
        started = time.monotonic()
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            proc = subprocess.Popen(
                list(argv),
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                cwd=self._folder,
                env={**env, TOKEN_ENV: self._workspace.token},
                start_new_session=True,
                preexec_fn=child_preexec(),
            )
            returncode = wait_contained(proc, self._workspace.token, timeout_s)
        return Outcome(
            returncode,
            read_tail(stdout_path, STDOUT_TAIL_BYTES),
            tail(read_tail(stderr_path, STDERR_TAIL_BYTES)),
            time.monotonic() - started,
        )


class SandboxPlace:
    """Runs in a :class:`~tools.sandbox.Sandbox`: a copy of the folder, holding the candidate's files and its
    parameters (:data:`PARAMS_NAME`)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox

    @property
    def folder(self) -> Path:
        return self._sandbox.path

    @property
    def candidate_dir(self) -> Path:
        return self._sandbox.path

    @property
    def params_file(self) -> Path:
        return self._sandbox.path / PARAMS_NAME  # readable by the sandbox's processes, unlike our trial folder

    def run(self, argv: Sequence[str], timeout_s: float | None, env: Mapping[str, str]) -> Outcome:
        done = self._sandbox.run(argv, timeout_s=timeout_s, env=env)
        return Outcome(done.returncode, done.stdout, tail(done.stderr), done.seconds, done.notes)


class EvaluatorPlace:
    """The user's evaluator in its folder; the candidate in a sandbox the evaluator starts it in.

    The evaluator finds the sandbox through :data:`~tools.candidate.CANDIDATE_ENV` (a file in the sandbox's
    trial folder, closed to the candidate). Each outcome carries what the sandbox could not enforce for the
    programs started so far, and :meth:`candidate_runs` says how many there were: an evaluator that never ran
    the candidate has scored the user's own code.
    """

    def __init__(self, folder: Path, workspace: TrialWorkspace, sandbox: Sandbox, params_json: str) -> None:
        self._evaluator = Folder(folder, workspace, params_json)
        self._sandbox = sandbox
        self._spec = sandbox.confinement.save()

    @property
    def folder(self) -> Path:
        return self._evaluator.folder

    @property
    def candidate_dir(self) -> Path:
        return self._sandbox.path

    @property
    def params_file(self) -> Path:
        return self._evaluator.params_file

    def candidate_runs(self) -> int:
        """How many programs the evaluator started in the candidate's sandbox so far."""
        return self._sandbox.confinement.started()[0]

    def run(self, argv: Sequence[str], timeout_s: float | None, env: Mapping[str, str]) -> Outcome:
        done = self._evaluator.run(argv, timeout_s, {**env, CANDIDATE_ENV: str(self._spec)})
        return Outcome(done.returncode, done.stdout, done.stderr, done.seconds, self._sandbox.confinement.started()[1])


@contextlib.contextmanager
def open_place(
    folder: Path,
    workspace: TrialWorkspace,
    limits: Limits | None,
    files: Mapping[str, str],
    params_json: str,
    *,
    candidate: bool = False,
    pass_env: Sequence[str] = (),
) -> Iterator[Place]:
    """The place one evaluation runs in: ``folder`` itself; with ``limits`` a sandboxed copy of it holding
    ``files`` (path relative to the folder -> text: the candidate's code), removed afterwards; with
    ``candidate`` too, the folder itself for the evaluator and that copy for the candidate it starts.

    Raises:
        OSError: the copy cannot be made or written.
    """
    if limits is None:
        yield Folder(folder, workspace, params_json)
        return
    with Sandbox(folder, limits, pass_env=pass_env) as sandbox:
        for relative, text in {**files, PARAMS_NAME: params_json}.items():
            sandbox.write(relative, text)
        if candidate:
            yield EvaluatorPlace(folder, workspace, sandbox, params_json)
        else:
            yield SandboxPlace(sandbox)

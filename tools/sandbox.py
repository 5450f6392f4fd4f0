"""Run generated code (a model-written program) in a fresh copy of a folder, under limits, without secrets or network.

A candidate program is untrusted: it may loop forever, fork without end, fill the memory or the disk, read
the user's keys or delete the user's files. A :class:`Sandbox` copies the folder once per candidate and runs
commands in the copy, each contained as follows:

* **Limits** (:class:`Limits`) are set with ``setrlimit`` in the child before it runs the program: CPU time
  (per process), address space, processes and file size; core dumps are off. A wall timeout kills every
  process of the run (:func:`tools.processes.wait_contained`).
* **Another user.** Run as root, the program runs as ``nobody``: root ignores the process limit, and root
  could write the user's files. ``nobody`` owns only the copy. Run as anyone else, the program runs as that
  user. Either way it gets a user namespace of its own where the kernel allows one, holding only that user:
  the process limit then counts the run's processes, not every process of ``nobody`` or of the user.
* **Nothing of the user's in reach.** The environment has no secrets and no credentials
  (:func:`agent.secrets.objective_environment`, :func:`agent.secrets.is_credential_name`); ``HOME`` and
  ``TMPDIR`` are folders of the sandbox, so ``~/.ssh`` and ``~/.aws`` are not where the program looks.
  Without root, the original folder is mounted read-only for the run (a mount namespace).
* **No network**, unless :attr:`Limits.network`: the run gets a network namespace of its own, holding only a
  loopback device (root: ``unshare(CLONE_NEWNET)``; anyone else: inside a new user namespace).

What the kernel does not allow here is not pretended: the run goes ahead and says what was not enforced in
:attr:`SandboxRun.notes`, and :attr:`SandboxRun.network_isolated` says whether the network really was cut.

The interpreter must be readable by ``nobody``. A Python installed in a folder closed to other users (pyenv
under ``/root``, mode 0700) is made reachable in the run's own mount namespace: an empty tmpfs covers the
closed folder and only the interpreter's folders are mounted back into it; the rest of it (``/root/.ssh``)
stays out of sight. Where no mount namespace can be made, the run fails with a message saying where to
install Python instead.

The copy lives in a trial folder (:func:`tools.processes.trial_workspace`): it is removed when the sandbox
closes, and a folder left by a run killed with ``kill -9`` is removed by
:func:`tools.processes.clean_leftovers` at the next start.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import pwd
import resource
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import TracebackType

from agent.secrets import is_credential_name, objective_environment
from tools.confinement import CLONE_NEWNET, CLONE_NEWNS, Confined, Plan, Report, load_libc, mount_flags
from tools.processes import (
    FOLDER_PREFIX,
    TOKEN_ENV,
    TrialWorkspace,
    child_preexec,
    read_tail,
    trial_workspace,
    wait_contained,
)

#: What is not copied: version control, environments, caches, databases (a study's own), trial folders.
DEFAULT_IGNORE = (
    ".git",
    ".hg",
    ".venv",
    "venv",
    "__pycache__",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    "*.db",
    "*.db-wal",
    "*.db-shm",
    f"{FOLDER_PREFIX}*",
)
#: Of stdout and of stderr, the end kept in :class:`SandboxRun`.
OUTPUT_TAIL_BYTES = 1 << 20
#: Who runs the program when we are root.
SANDBOX_USER = "nobody"


@dataclass(frozen=True)
class Limits:
    """What one command in a sandbox may use; None leaves a limit as it is.

    Attributes:
        cpu_time_s: CPU seconds of each process (``RLIMIT_CPU``): SIGXCPU, then SIGKILL a second later.
        memory_bytes: address space of each process (``RLIMIT_AS``); a CUDA program maps far more than it
            uses and needs None.
        processes: processes and threads of the user running the program (``RLIMIT_NPROC``).
        file_size_bytes: the largest file it may write (``RLIMIT_FSIZE``), stdout and stderr included.
        network: whether it may use the network.
    """

    cpu_time_s: float | None = 600.0
    memory_bytes: int | None = 4 << 30
    processes: int | None = 256
    file_size_bytes: int | None = 1 << 30
    network: bool = False


@dataclass(frozen=True)
class SandboxRun:
    """How one command in a sandbox ended.

    Attributes:
        returncode: its exit status (negative: killed by that signal); None when it ran past its timeout.
        stdout: the end of what it printed on stdout (:data:`OUTPUT_TAIL_BYTES`).
        stderr: the end of what it printed on stderr.
        seconds: wall-clock time it took.
        network_isolated: whether it really ran without network.
        notes: what could not be enforced here, one sentence each.
    """

    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    network_isolated: bool
    notes: tuple[str, ...] = ()


class SandboxError(OSError):
    """A command cannot run in the sandbox here; the message says what to change."""


class Sandbox:
    """A fresh copy of a working tree per candidate, run under limits, removed afterwards.

    Use it as ``with Sandbox(tree, limits) as box: box.write("model.py", code); box.run([...], timeout_s=60)``.
    ``ignore`` holds :func:`shutil.ignore_patterns` patterns of what is not copied.
    """

    def __init__(self, tree: Path, limits: Limits = Limits(), *, ignore: Sequence[str] = DEFAULT_IGNORE) -> None:
        self.tree = Path(tree)
        self.limits = limits
        self.ignore = tuple(ignore)
        self._user = _sandbox_user()
        self._stack = contextlib.ExitStack()
        self._workspace: TrialWorkspace | None = None
        self._runs = 0

    def __enter__(self) -> Sandbox:
        if not self.tree.is_dir():
            raise SandboxError(f"cannot sandbox {self.tree}: not a folder; give the folder the command runs in")
        try:
            workspace = self._stack.enter_context(trial_workspace(0))
            self._workspace = workspace
            shutil.copytree(self.tree, self.path, symlinks=True, ignore=shutil.ignore_patterns(*self.ignore))
            for private in (self._home, self._tmp):
                private.mkdir()
            if self._user is not None:
                workspace.folder.chmod(0o711)  # the user reaches its folders, lists nothing
                for folder in (self.path, self._home, self._tmp):
                    _give(folder, self._user)
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._close()

    @property
    def path(self) -> Path:
        """The copy: where commands run and candidate files go."""
        return self._open().folder / "tree"

    def write(self, relative: str, text: str) -> None:
        """Put a candidate's file into the copy, at ``relative`` (a path inside the folder, e.g. ``model.py``).

        Raises:
            ValueError: ``relative`` is absolute, climbs out with ``..`` or leads out through a link.
        """
        parts = PurePosixPath(relative)
        copy = self.path.resolve()
        target = copy / parts
        if parts.is_absolute() or ".." in parts.parts or not target.resolve().is_relative_to(copy):
            raise ValueError(
                f"cannot write {relative!r}: give a path inside the folder, relative to it (e.g. 'src/model.py')"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        if self._user is not None:
            for made in [target, *target.parents[: len(parts.parts) - 1]]:
                os.lchown(made, *self._user)

    def run(self, argv: Sequence[str], *, timeout_s: float | None, env: Mapping[str, str] | None = None) -> SandboxRun:
        """Run ``argv`` in the copy, contained; every process it started is killed when it ends.

        Args:
            argv: the program and its arguments (no shell).
            timeout_s: wall-clock seconds before it is killed; None waits as long as it runs.
            env: its environment as :func:`agent.secrets.objective_environment` gives it (that, when None);
                credentials are taken out in any case, and ``HOME``, ``TMPDIR`` and the trial token set.

        Raises:
            SandboxError: it cannot be started here (the message says why and what to change).
            FileNotFoundError: the program does not exist.
        """
        if isinstance(argv, str) or not argv:
            raise ValueError(f'argv: expected a non-empty list, e.g. ["python", "train.py"], got {argv!r}')
        workspace = self._open()
        self._runs += 1
        environment = self._environment(env, workspace.token)
        plan = self._plan(_program(argv[0], environment, self.path))
        out_path = workspace.folder / f"stdout-{self._runs}"
        err_path = workspace.folder / f"stderr-{self._runs}"
        started = time.monotonic()
        with out_path.open("wb") as out, err_path.open("wb") as err, Report() as report:
            try:
                proc = subprocess.Popen(
                    list(argv),
                    stdout=out,
                    stderr=err,
                    stdin=subprocess.DEVNULL,
                    cwd=self.path,
                    env=environment,
                    start_new_session=True,
                    preexec_fn=functools.partial(plan.confine, report.fd),
                )
            except (OSError, subprocess.SubprocessError) as exc:
                raise self._not_started(argv[0], plan, report.read(), exc) from exc
            confined = report.read()
            returncode = wait_contained(proc, workspace.token, timeout_s)
        return SandboxRun(
            returncode,
            read_tail(out_path, OUTPUT_TAIL_BYTES),
            read_tail(err_path, OUTPUT_TAIL_BYTES),
            time.monotonic() - started,
            network_isolated=confined.network_isolated,
            notes=self._notes(plan, confined),
        )

    # What run() puts together -------------------------------------------------------------------------------
    @property
    def _home(self) -> Path:
        return self._open().folder / "home"

    @property
    def _tmp(self) -> Path:
        return self._open().folder / "tmp"

    def _open(self) -> TrialWorkspace:
        if self._workspace is None:
            raise RuntimeError("the sandbox is not open: use it as `with Sandbox(folder) as box: box.run(...)`")
        return self._workspace

    def _close(self) -> None:
        if self._workspace is not None and self._user is None:
            _make_removable(self._workspace.folder)
        self._workspace = None
        self._stack.close()

    def _environment(self, env: Mapping[str, str] | None, token: str) -> dict[str, str]:
        given = objective_environment() if env is None else env
        kept = {name: value for name, value in given.items() if not is_credential_name(name)}
        return {**kept, "HOME": str(self._home), "TMPDIR": str(self._tmp), TOKEN_ENV: token}

    def _plan(self, program: Path | None) -> Plan:
        """How the child confines itself: namespaces, mounts, limits and user, worked out here, in the parent."""
        linux = load_libc() is not None
        hidden = _hidden(self._user, _needed(program, self._open().folder)) if linux else ()
        read_only = self._read_only() if linux else ()
        flags = CLONE_NEWNS if hidden or read_only else 0
        if linux and not self.limits.network:
            flags |= CLONE_NEWNET
        return Plan(
            flags=flags,
            own_namespace=linux,
            hidden=hidden,
            read_only=read_only,
            rlimits=_rlimits(self.limits),
            user=self._user,
            then=child_preexec(),
        )

    def _read_only(self) -> tuple[tuple[str, int], ...]:
        """The original folder, when the program runs as our user (root's files are closed to ``nobody``)."""
        tree = self.tree.resolve()
        if self._user is not None or self._open().folder.resolve().is_relative_to(tree):
            return ()
        return ((str(tree), mount_flags(tree)),)

    def _notes(self, plan: Plan, confined: Confined) -> tuple[str, ...]:
        """What was not enforced: the network, and without root the original folder and the process limit."""
        linux_only = "namespaces exist on Linux only"
        why = confined.failure or linux_only
        notes = []
        if not self.limits.network and not confined.network_isolated:
            notes.append(f"network not isolated: {why}")
        if self.limits.processes is not None and not confined.own_count:
            user = _user_name(self._user[0] if self._user is not None else os.getuid())
            notes.append(
                f"the process limit counts every process of user {user}, not only the run's: "
                f"{confined.user_failure or linux_only}"
            )
        if self._user is not None:
            return tuple(notes)
        protected = bool(plan.read_only) and confined.failure is None
        if not protected:
            inside = self._open().folder.resolve().is_relative_to(self.tree.resolve())
            because = "the temporary folder lies in it (set TMPDIR elsewhere)" if inside else why
            notes.append(f"the original folder {self.tree.resolve()} is writable by the program: {because}")
        return tuple(notes)

    def _not_started(self, program: str, plan: Plan, confined: Confined, exc: BaseException) -> BaseException:
        """Why ``program`` did not start, with what to do about it."""
        if confined.error is not None:
            return SandboxError(f"cannot run {program} in the sandbox: {confined.error}")
        if isinstance(exc, PermissionError) and plan.user is not None:
            closed = ", ".join(hidden for hidden, _ in plan.hidden)
            uncovered = closed and confined.failure
            why = f" ({closed} is closed to it and could not be covered: {confined.failure})" if uncovered else ""
            return SandboxError(
                f"the sandbox user {SANDBOX_USER} cannot run {program}{why}: install it where every user may read "
                "it (e.g. /usr/local or /opt, and a venv outside /root), or run tunesmith as another user than root"
            )
        return exc


# The child's side ---------------------------------------------------------------------------------------------
# Helpers ------------------------------------------------------------------------------------------------------
def _sandbox_user() -> tuple[int, int] | None:
    """The uid and gid the program runs as: ``nobody``'s when we are root, None (ours) otherwise."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SANDBOX_USER)
    except KeyError:
        return (65534, 65534)
    return (entry.pw_uid, entry.pw_gid)


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _give(folder: Path, user: tuple[int, int]) -> None:
    """Make ``folder`` and everything in it the sandbox user's (links themselves, not what they point to)."""
    os.lchown(folder, *user)
    for root, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(root, name), *user)


def _make_removable(folder: Path) -> None:
    """Open every folder the program closed (``chmod 000``), so that removing the trial folder cannot fail."""
    for root, dirs, _ in os.walk(folder):
        for name in dirs:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                with contextlib.suppress(OSError):
                    os.chmod(path, 0o700)


def _program(name: str, env: Mapping[str, str], cwd: Path) -> Path | None:
    """Where ``name`` is, links resolved, as the child will look for it from ``cwd``; None when not found."""
    found = shutil.which(name, path=env.get("PATH", os.defpath)) if os.sep not in name else name
    return None if found is None else (cwd / found).resolve()


def _needed(program: Path | None, folder: Path) -> list[Path]:
    """The folders the program cannot run without: its own, this interpreter's (``{python}`` and what it
    starts) and the trial folder."""
    found = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    found.add(folder.resolve())
    if program is not None:
        found.add(program.parent)
    return sorted(p for p in found if not any(p != q and p.is_relative_to(q) for q in found))


def _hidden(user: tuple[int, int] | None, needed: list[Path]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """For each outermost folder closed to ``user`` on the way to a ``needed`` one: the needed folders in it."""
    if user is None:
        return ()
    covered: dict[Path, list[str]] = {}
    for path in needed:
        closed = next((a for a in reversed(path.parents) if _closed(a, user)), None)
        if closed is not None and closed != Path("/"):
            covered.setdefault(closed, []).append(str(path))
    return tuple((str(closed), tuple(paths)) for closed, paths in covered.items())


def _closed(folder: Path, user: tuple[int, int]) -> bool:
    """Whether ``user`` (no supplementary groups) may not pass through ``folder``."""
    info = folder.stat()
    if info.st_uid == user[0]:
        return not info.st_mode & stat.S_IXUSR
    if info.st_gid == user[1]:
        return not info.st_mode & stat.S_IXGRP
    return not info.st_mode & stat.S_IXOTH


def _rlimits(limits: Limits) -> tuple[tuple[int, int, int], ...]:
    """``limits`` as ``(resource, soft, hard)``, none above the hard limit we have (we may not raise it)."""
    cpu = None if limits.cpu_time_s is None else math.ceil(limits.cpu_time_s)
    wanted = [
        (resource.RLIMIT_CPU, cpu, None if cpu is None else cpu + 1),  # SIGXCPU first, SIGKILL a second later
        (resource.RLIMIT_AS, limits.memory_bytes, limits.memory_bytes),
        (resource.RLIMIT_NPROC, limits.processes, limits.processes),
        (resource.RLIMIT_FSIZE, limits.file_size_bytes, limits.file_size_bytes),
        (resource.RLIMIT_CORE, 0, 0),
    ]
    result = []
    for limit, soft, hard in wanted:
        if soft is None or hard is None:
            continue
        ceiling = resource.getrlimit(limit)[1]
        if ceiling != resource.RLIM_INFINITY:
            soft, hard = min(soft, ceiling), min(hard, ceiling)
        result.append((limit, soft, hard))
    return tuple(result)

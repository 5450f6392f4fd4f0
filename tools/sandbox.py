"""Run generated code (a model-written program) in a fresh copy of a folder, under limits, without secrets or network.

A candidate program is untrusted: it may loop forever, fork without end, fill the memory or the disk, read
the user's keys, delete the user's files, forge its score or leave a daemon behind to rewrite later trials. A
:class:`Sandbox` copies the folder once per candidate; a :class:`Confinement` starts programs in the copy, each
contained as follows:

* **bubblewrap where it works** (:mod:`tools.bubblewrap`): PID, mount, user, IPC and network namespaces of
  the run's own; a filesystem holding only the system folders and the interpreter (read-only), the copy and a
  home (read-write), a private ``/tmp`` and ``/dev/shm``. Nothing the run starts outlives it, and nothing of
  the host (other processes, the study's storage, the user's home, unix sockets) is in its reach.
* **Limits** (:class:`Limits`) are set with ``setrlimit`` in the child before it runs the program: CPU time
  (per process), address space, processes and file size; core dumps are off. A wall timeout kills every
  process of the run (:func:`tools.processes.wait_contained`).
* **Another user.** Run as root, the program runs as ``nobody``: root ignores the process limit, and root
  could write the user's files. ``nobody`` owns only the copy. Run as anyone else, the program runs as that
  user. Either way it gets a user namespace of its own where the kernel allows one, holding only that user:
  the process limit then counts the run's processes, not every process of ``nobody`` or of the user.
* **An environment by allow-list** (:func:`candidate_environment`): the locale, ``PATH``, thread counts,
  ``HOME`` and ``TMPDIR`` of its own, the trial token, the variables the job passes (``pass_env``) and what the
  evaluator gives explicitly. Nothing else of ours: a name that looks harmless may hold a password.
* **A copy without credentials or storage**: version control, environments, dotfiles that hold credentials
  (``.env``, ``.ssh``, ``.netrc``...) and every SQLite file, whatever its name, are left out of the copy.
* **No network**, unless :attr:`Limits.network`.

Without bubblewrap (not installed, or refused by the kernel) the sandbox confines the program itself, more
weakly: namespaces by ``unshare`` where allowed, the original folder read-only, processes found by token. What
is not enforced is not pretended: the run goes ahead and says so in :attr:`SandboxRun.notes` (shown in the
trial's feedback and by ``tunesmith status``), and :attr:`SandboxRun.network_isolated` says whether the network
really was cut.

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
import dataclasses
import errno
import fnmatch
import functools
import json
import math
import os
import pwd
import re
import resource
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import IO, Any

from agent.files import is_sqlite
from agent.secrets import is_credential_name
from tools.bubblewrap import Bubblewrap, bubblewrap
from tools.confinement import CLONE_NEWNET, CLONE_NEWNS, Confined, Plan, Report, load_libc, mount_flags
from tools.processes import (
    FOLDER_PREFIX,
    TOKEN_ENV,
    child_preexec,
    trial_workspace,
    wait_contained,
)

#: What is not copied: version control, environments, caches, storage (a study's own), trial folders, and
#: the files and folders that hold credentials. SQLite files are left out by their content too.
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
    "*.db-*",
    "*.sqlite",
    "*.sqlite3",
    "*.sqlite-*",
    "*.sqlite3-*",
    "*-wal",
    "*-shm",
    "*-journal",
    f"{FOLDER_PREFIX}*",
    ".env",
    ".env.*",
    ".envrc",
    ".netrc",
    ".pgpass",
    ".npmrc",
    ".pypirc",
    ".git-credentials",
    ".ssh",
    ".gnupg",
    ".aws",
    ".azure",
    ".kube",
    ".docker",
    "gcloud",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
)
#: The variables of ours a candidate gets: the locale, where programs are, thread counts, which GPUs.
CANDIDATE_ENV = re.compile(
    r"^(PATH|LANG|LANGUAGE|LC_[A-Z]+|TZ|TERM|PYTHONHASHSEED|PYTHONUNBUFFERED|PYTHONDONTWRITEBYTECODE|PYTHONIOENCODING"
    r"|[A-Z]+_NUM_THREADS|OPENBLAS_CORETYPE|OPENBLAS_L2_SIZE|(CUDA|HIP|ROCR|NVIDIA)_VISIBLE_DEVICES)$"
)
#: Run first inside bubblewrap: the process limit, then the program. Set before bwrap, the limit would count every
#: process of the sandbox user on the host (bwrap's own namespaces could not even be made under load); set once
#: bwrap has made the run's user namespace, it counts the run's processes alone.
_LIMIT_PROCESSES_THEN_EXEC = (
    "import os, resource, sys; n = int(sys.argv[1]); resource.setrlimit(resource.RLIMIT_NPROC, (n, n)); "
    "os.execvp(sys.argv[2], sys.argv[2:])"
)
#: Where a :class:`Confinement` is saved for the evaluator, and where the programs it started are logged.
SPEC_NAME = "candidate.json"
LOG_NAME = "candidate.log"
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
        file_size_bytes: the largest file it may write (``RLIMIT_FSIZE``), stdout and stderr included; with
            bubblewrap also the size of its private ``/tmp`` and of its ``/dev/shm``.
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
    ``ignore`` holds :func:`shutil.ignore_patterns` patterns of what is not copied; SQLite files are left out
    whatever their name.
    """

    def __init__(
        self,
        tree: Path,
        limits: Limits = Limits(),
        *,
        ignore: Sequence[str] = DEFAULT_IGNORE,
        pass_env: Sequence[str] = (),
    ) -> None:
        self.tree = Path(tree)
        self.limits = limits
        self.ignore = tuple(ignore)
        self.pass_env = tuple(pass_env)
        self._user = sandbox_user()
        self._stack = contextlib.ExitStack()
        self._confinement: Confinement | None = None

    def __enter__(self) -> Sandbox:
        if not self.tree.is_dir():
            raise SandboxError(f"cannot sandbox {self.tree}: not a folder; give the folder the command runs in")
        try:
            workspace = self._stack.enter_context(trial_workspace(0))
            folder = workspace.folder
            copy, home, tmp = folder / "tree", folder / "home", folder / "tmp"
            shutil.copytree(self.tree, copy, symlinks=True, ignore=_ignored(self.ignore))
            for private in (home, tmp):
                private.mkdir()
            if self._user is not None:
                folder.chmod(0o711)  # the user reaches its folders, lists nothing
                for given in (copy, home, tmp):
                    _give(given, self._user)
            self._confinement = Confinement(
                folder, self.tree, copy, home, tmp, self.limits, self._user, workspace.token, self.pass_env
            )
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
        return self.confinement.copy

    @property
    def confinement(self) -> Confinement:
        """How programs start in the copy; :meth:`Confinement.save` hands it to another process."""
        if self._confinement is None:
            raise RuntimeError("the sandbox is not open: use it as `with Sandbox(folder) as box: box.run(...)`")
        return self._confinement

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
        """Run ``argv`` in the copy, contained (:meth:`Confinement.run`)."""
        return self.confinement.run(argv, timeout_s=timeout_s, env=env)

    def _close(self) -> None:
        if self._confinement is not None and self._user is None:
            _make_removable(self._confinement.folder)
        self._confinement = None
        self._stack.close()


@dataclass(frozen=True)
class Started:
    """A program started in a copy: its process (pipes as asked for) and what was not enforced for it."""

    process: subprocess.Popen[bytes]
    network_isolated: bool
    notes: tuple[str, ...]
    wrapped: bool = False

    def status(self, returncode: int | None) -> int | None:
        """The program's exit status as Popen gives it (negative: killed by that signal). bubblewrap's init
        reports a program killed by signal N as exit status 128 + N, as a shell does; that is translated back."""
        if self.wrapped and returncode is not None and 128 < returncode <= 128 + 64:
            return 128 - returncode
        return returncode


@dataclass(frozen=True)
class Confinement:
    """How programs are started in one candidate's copy, by tunesmith or by the user's evaluator.

    It is plain data, so a trusted evaluator in another process (:mod:`tools.candidate`) starts the candidate
    exactly as tunesmith would: :meth:`save` writes it into the trial folder, :meth:`load` reads it back. Each
    program started is recorded in the trial folder's log, with what was not enforced for it, so tunesmith
    can tell whether an evaluator ran the candidate at all and put the notes into the trial's feedback.

    Attributes:
        folder: the trial folder (outputs, the log); closed to the program.
        tree: the original folder the copy was made from.
        copy: the copy, the program's working directory.
        home: its ``HOME``.
        tmp: its ``TMPDIR`` where bubblewrap is missing (with it, a private ``/tmp``).
        limits: what it may use.
        user: the uid and gid it runs as (root runs it as ``nobody``); None: ours.
        token: the trial token its processes carry.
        pass_env: variables of ours it gets besides the allow-list (the job's ``pass_env``).
    """

    folder: Path
    tree: Path
    copy: Path
    home: Path
    tmp: Path
    limits: Limits
    user: tuple[int, int] | None
    token: str
    pass_env: tuple[str, ...] = ()

    # Handing it to the evaluator ----------------------------------------------------------------------------
    def save(self) -> Path:
        """Write it into the trial folder, readable by us alone; returns the file."""
        path = self.folder / SPEC_NAME
        data = {
            f.name: str(v) if isinstance(v, Path) else v
            for f in dataclasses.fields(self)
            if not isinstance(v := getattr(self, f.name), Limits)
        }
        path.write_text(json.dumps({**data, "limits": dataclasses.asdict(self.limits)}))
        path.chmod(0o600)
        return path

    @classmethod
    def load(cls, path: Path) -> Confinement:
        """What :meth:`save` wrote."""
        data: dict[str, Any] = json.loads(path.read_text())
        paths = {name: Path(data[name]) for name in ("folder", "tree", "copy", "home", "tmp")}
        user = data["user"]
        return cls(
            **paths,
            limits=Limits(**data["limits"]),
            user=None if user is None else (int(user[0]), int(user[1])),
            token=str(data["token"]),
            pass_env=tuple(data["pass_env"]),
        )

    def started(self) -> tuple[int, tuple[str, ...]]:
        """How many programs were started in the copy so far, and the notes of what was not enforced."""
        try:
            lines = (self.folder / LOG_NAME).read_text().splitlines()
        except FileNotFoundError:
            return 0, ()
        notes: list[str] = []
        for line in lines:
            notes += [n for n in json.loads(line)["notes"] if n not in notes]
        return len(lines), tuple(notes)

    # Starting programs --------------------------------------------------------------------------------------
    def run(
        self,
        argv: Sequence[str],
        *,
        timeout_s: float | None,
        env: Mapping[str, str] | None = None,
        input: bytes | None = None,
    ) -> SandboxRun:
        """Run ``argv`` in the copy, contained; every process it started is killed when it ends.

        Args:
            argv: the program and its arguments (no shell).
            timeout_s: wall-clock seconds before it is killed; None waits as long as it runs.
            env: variables given to it on purpose, beyond :func:`candidate_environment`'s allow-list
                (credentials are taken out in any case).
            input: what it reads on stdin (nothing when None).

        Raises:
            SandboxError: it cannot be started here (the message says why and what to change).
            FileNotFoundError: the program does not exist.
        """
        with (
            tempfile.TemporaryFile(dir=self.folder) as out,
            tempfile.TemporaryFile(dir=self.folder) as err,
            tempfile.TemporaryFile(dir=self.folder) as feed,
        ):
            feed.write(input or b"")
            feed.seek(0)
            started_at = time.monotonic()
            started = self._start(argv, env, stdin=feed, stdout=out, stderr=err)
            returncode = started.status(wait_contained(started.process, self.token, timeout_s))
            seconds = time.monotonic() - started_at
            return SandboxRun(returncode, _tail(out), _tail(err), seconds, started.network_isolated, started.notes)

    @contextlib.contextmanager
    def start(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> Iterator[Started]:
        """Start ``argv`` in the copy with pipes on its stdin and stdout (its stderr is ours: the evaluator's
        stderr is the trial's feedback); every process of it is killed when the block ends."""
        started = self._start(argv, env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None)
        try:
            yield started
        finally:
            for pipe in (started.process.stdin, started.process.stdout):
                with contextlib.suppress(OSError):
                    if pipe is not None:
                        pipe.close()
            wait_contained(started.process, self.token, 0)

    def _start(
        self, argv: Sequence[str], env: Mapping[str, str] | None, *, stdin: Any, stdout: Any, stderr: Any
    ) -> Started:
        if isinstance(argv, str) or not argv:
            raise ValueError(f'argv: expected a non-empty list, e.g. ["python", "train.py"], got {argv!r}')
        strong = bubblewrap(self.user) if load_libc() is not None else "namespaces exist on Linux only"
        environment = self._environment(env, strong)
        program = _program(argv[0], environment, self.copy)
        if program is None or not program.exists():
            raise FileNotFoundError(errno.ENOENT, f"no such program (looked on PATH and in {self.copy})", argv[0])
        plan = self._plan(program, strong)
        command = list(argv)
        if isinstance(strong, Bubblewrap):
            if self.limits.processes is not None:  # counted in the run's own user namespace: set inside it
                command = [sys.executable, "-c", _LIMIT_PROCESSES_THEN_EXEC, str(self.limits.processes), *command]
            command = strong.argv(
                command,
                writable=(self.copy, self.home),
                readable=_needed(program, None),
                cwd=self.copy,
                network=self.limits.network,
                scratch_bytes=self.limits.file_size_bytes,
            )
        with Report() as report:
            try:
                proc = subprocess.Popen(
                    command,
                    stdin=stdin,
                    stdout=stdout,
                    stderr=stderr,
                    cwd=self.copy,
                    env=environment,
                    start_new_session=True,
                    preexec_fn=functools.partial(plan.confine, report.fd),
                )
            except (OSError, subprocess.SubprocessError) as exc:
                raise self._not_started(argv[0], plan, report.read(), exc) from exc
            confined = report.read()
        if isinstance(strong, Bubblewrap):
            started = Started(proc, network_isolated=not self.limits.network, notes=(), wrapped=True)
        else:
            isolated = confined.network_isolated
            started = Started(proc, isolated, (_weaker(strong), *self._notes(plan, confined)))
        with (self.folder / LOG_NAME).open("a") as log:
            log.write(json.dumps({"program": argv[0], "notes": list(started.notes)}) + "\n")
        return started

    # What a start puts together -----------------------------------------------------------------------------
    def _environment(self, env: Mapping[str, str] | None, strong: Bubblewrap | str) -> dict[str, str]:
        tmp = "/tmp" if isinstance(strong, Bubblewrap) else str(self.tmp)
        given = candidate_environment(os.environ, self.pass_env, env or {})
        return {**given, "HOME": str(self.home), "TMPDIR": tmp, TOKEN_ENV: self.token}

    def _plan(self, program: Path, strong: Bubblewrap | str) -> Plan:
        """How the child confines itself: namespaces, mounts, limits and user, worked out here, in the parent.

        With bubblewrap, the child only covers folders closed to the sandbox user (so that bwrap, running as
        that user, can bind the interpreter in them), sets the limits and becomes the user; bwrap does the rest.
        """
        linux = load_libc() is not None
        ourselves = linux and not isinstance(strong, Bubblewrap)  # the fallback: we make the namespaces
        hidden = _hidden(self.user, _needed(program, self.folder)) if linux else ()
        read_only = self._read_only() if ourselves else ()
        flags = CLONE_NEWNS if hidden or read_only else 0
        if ourselves and not self.limits.network:
            flags |= CLONE_NEWNET
        return Plan(
            flags=flags,
            own_namespace=ourselves,
            hidden=hidden,
            read_only=read_only,
            rlimits=_rlimits(self.limits, processes=not isinstance(strong, Bubblewrap)),
            user=self.user,
            then=child_preexec(),
        )

    def _read_only(self) -> tuple[tuple[str, int], ...]:
        """The original folder, when the program runs as our user (root's files are closed to ``nobody``)."""
        tree = self.tree.resolve()
        if self.user is not None or self.folder.resolve().is_relative_to(tree):
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
            user = _user_name(self.user[0] if self.user is not None else os.getuid())
            notes.append(
                f"the process limit counts every process of user {user}, not only the run's: "
                f"{confined.user_failure or linux_only}"
            )
        if self.user is not None:
            return tuple(notes)
        protected = bool(plan.read_only) and confined.failure is None
        if not protected:
            inside = self.folder.resolve().is_relative_to(self.tree.resolve())
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


def as_user(user: tuple[int, int], program: Path) -> Plan:
    """How a child becomes ``user`` with ``program`` and this interpreter in reach (folders closed to the user
    covered, the needed ones mounted back): what runs tunesmith itself as an unprivileged user where the
    interpreter lives under ``/root`` (the reliability benchmark's unprivileged arm)."""
    hidden = _hidden(user, _needed(program, None))
    return Plan(CLONE_NEWNS if hidden else 0, False, hidden, (), (), user, child_preexec())


def candidate_environment(ours: Mapping[str, str], pass_env: Sequence[str], given: Mapping[str, str]) -> dict[str, str]:
    """What a candidate's process gets of ``ours``: the allow-list (:data:`CANDIDATE_ENV`) and ``pass_env``,
    then what its evaluator ``given`` it; credentials never (a file name or a socket opens an account)."""
    kept = {name: value for name, value in ours.items() if CANDIDATE_ENV.match(name) or name in pass_env}
    return {name: value for name, value in {**kept, **given}.items() if not is_credential_name(name)}


def _weaker(why: str) -> str:
    """The note of a run confined without bubblewrap: what it lacks, and why."""
    return (
        f"weaker confinement: {why}; without it a process that leaves the trial with a clean environment may "
        "survive it, and /tmp, /dev/shm, unix sockets and the host's processes are shared with the program"
    )


def _tail(file: IO[bytes]) -> str:
    """The end of a run's output file (:data:`OUTPUT_TAIL_BYTES`), decoded leniently."""
    size = file.seek(0, os.SEEK_END)
    file.seek(max(0, size - OUTPUT_TAIL_BYTES))
    return file.read().decode("utf-8", errors="replace")


def _ignored(patterns: Sequence[str]) -> Any:
    """A :func:`shutil.copytree` ``ignore``: names matching ``patterns``, and files that are SQLite databases."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        left = {n for n in names if any(fnmatch.fnmatch(n, p) for p in patterns)}
        return left | {n for n in names if n not in left and is_sqlite(os.path.join(folder, n))}

    return ignore


# Helpers ------------------------------------------------------------------------------------------------------
def sandbox_user() -> tuple[int, int] | None:
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


def _needed(program: Path | None, folder: Path | None) -> list[Path]:
    """The folders the program cannot run without: its own, this interpreter's (``{python}`` and what it
    starts) and the trial folder (when given)."""
    found = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    if folder is not None:
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


def _rlimits(limits: Limits, *, processes: bool = True) -> tuple[tuple[int, int, int], ...]:
    """``limits`` as ``(resource, soft, hard)``, none above the hard limit we have (we may not raise it); without
    the process limit when it is set inside the run instead (``processes=False``)."""
    cpu = None if limits.cpu_time_s is None else math.ceil(limits.cpu_time_s)
    wanted = [
        (resource.RLIMIT_CPU, cpu, None if cpu is None else cpu + 1),  # SIGXCPU first, SIGKILL a second later
        (resource.RLIMIT_AS, limits.memory_bytes, limits.memory_bytes),
        (resource.RLIMIT_NPROC, limits.processes if processes else None, limits.processes),
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

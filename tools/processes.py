"""The processes evaluators start: contained while their trial runs, all killed when it ends, found after a crash.

A trial's command may start anything: a background job (``sleep 300 &``), a daemon that double-forks, a
grandchild in a session of its own. None of it may outlive the trial, because it would hold a GPU, write
into the next trial's files or keep running for days. Process groups alone miss whatever leaves the group,
so each trial is contained four ways:

* its child gets a token, ``TUNESMITH_TRIAL_TOKEN=<uuid4 hex>``, in its environment; everything it starts
  inherits it, wherever it goes;
* on Linux this process becomes a *child subreaper* when its first evaluator child starts: a descendant
  whose parent exits is re-parented to us instead of to init, so it stays in our tree where psutil sees it;
* when the trial ends, for any reason (a result, a failure, a timeout, Ctrl-C, a cancel), :func:`kill_tree`
  kills the child's process group, its descendants and every process of ours that carries the token;
* the kernel kills the child itself when this process dies, even by ``kill -9`` (``PR_SET_PDEATHSIG``). What
  the child started is left; each trial's temporary folder is named after its owner (our pid, start time and
  the token), and :func:`clean_leftovers`, run when a study starts, kills what a dead run left and removes
  its folders.

Where prctl does not exist (macOS) the process group and the token are what is left: an orphan that leaves
the group is re-parented to launchd, out of our sight.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import psutil
from pydantic import AfterValidator

from agent.registry import config_problem

#: The environment variable that marks every process of one trial.
TOKEN_ENV = "TUNESMITH_TRIAL_TOKEN"
#: Trial folders are ``<tempdir>/tunesmith-trial-<number>-<owner pid>-<owner start, ms>-<token>``.
FOLDER_PREFIX = "tunesmith-trial-"
_OWNED_FOLDER = re.compile(re.escape(FOLDER_PREFIX) + r"\d+-(\d+)-(\d+)-([0-9a-f]{32})")

#: A folder whose name names no owner (an older tunesmith made it) may belong to a live run for this long.
_UNOWNED_FOLDER_AGE_S = 3600.0
#: psutil derives a start time from the wall clock, which may be stepped between two readings.
_START_TIME_SLACK_S = 1.0
#: Listing and killing repeats while it finds new processes (one may fork between the two); at most this often.
_SWEEPS = 3
#: How long to wait for killed processes to become reapable.
_REAP_WITHIN_S = 1.0
#: After its timeout a trial's child gets SIGTERM and this long to exit on its own (save, clean up) before SIGKILL.
KILL_GRACE_S = 3.0
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

_lock = threading.Lock()
_live: dict[int, str | None] = {}


# Starting a trial's child ---------------------------------------------------------------------------------
@functools.cache
def _prctl() -> Callable[..., int] | None:
    """libc's ``prctl`` on Linux, None elsewhere. Loaded here, in the parent, so a forked child only calls it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


def _set(option: int, value: int) -> bool:
    prctl = _prctl()
    return prctl is not None and prctl(option, value, 0, 0, 0) == 0


@functools.cache
def _become_subreaper() -> bool:
    """Have orphaned descendants re-parented to this process (once, for its lifetime), so they stay findable."""
    return _set(_PR_SET_CHILD_SUBREAPER, 1)


def die_with_parent(parent_pid: int) -> None:
    """Run first in a trial's child: the kernel SIGKILLs it when ``parent_pid`` (the run) dies, even by ``kill -9``.

    The signal follows the *thread* that started the child, so that thread must wait for the child (every
    evaluator does). A child whose parent died before this ran kills itself: nobody is left to read it.
    """
    if _set(_PR_SET_PDEATHSIG, signal.SIGKILL) and os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGKILL)


def child_preexec() -> Callable[[], None] | None:
    """The ``preexec_fn`` for a trial's ``subprocess.Popen``; None where prctl does not exist.

    None keeps Popen on its faster spawn path there. The function only calls prctl and getppid, which take no
    lock another thread could hold at the fork.
    """
    if _prctl() is None:
        return None
    return functools.partial(die_with_parent, os.getpid())


@dataclass(frozen=True)
class TrialWorkspace:
    """One trial's temporary folder and the token its processes carry (``{TOKEN_ENV: token}``)."""

    folder: Path
    token: str


@contextlib.contextmanager
def trial_workspace(number: int) -> Iterator[TrialWorkspace]:
    """A fresh folder and token for trial ``number``; the folder is removed when the block ends.

    The folder's name says who owns it (``tunesmith-trial-<number>-<pid>-<start ms>-<token>``): a name is
    made in one step, so a run killed at any moment, even between making the folder and writing into it or
    halfway through removing it, leaves a folder that :func:`clean_leftovers` can attribute.
    """
    _become_subreaper()
    token = uuid.uuid4().hex
    started_ms = round(psutil.Process().create_time() * 1000)
    folder = Path(tempfile.gettempdir()) / f"{FOLDER_PREFIX}{number}-{os.getpid()}-{started_ms}-{token}"
    folder.mkdir(mode=0o700)
    try:
        yield TrialWorkspace(folder, token)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _env_name_problem(names: Iterable[object]) -> str | None:
    for name in names:
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            return (
                f"{name!r} is not an environment variable name "
                "(letters, digits and _, not starting with a digit), e.g. HF_TOKEN"
            )
    return None


def _validate_env_names(names: list[str]) -> list[str]:
    problem = _env_name_problem(names)
    if problem is not None:
        raise config_problem(problem)
    return names


#: A job file's ``pass_env``: names of secret variables an objective may have.
EnvNames = Annotated[list[str], AfterValidator(_validate_env_names)]


def pass_env_names(names: Iterable[str]) -> list[str]:
    """``names`` as a list, checked (``pass_env`` of an evaluator's constructor).

    Raises:
        ValueError: a string instead of a list, or an item that is not a variable name; the message names
            ``pass_env``.
    """
    if isinstance(names, str):
        raise ValueError(f'pass_env: expected a list of variable names, e.g. ["HF_TOKEN"], got {names!r}')
    listed = list(names)
    problem = _env_name_problem(listed)
    if problem is not None:
        raise ValueError(f"pass_env: {problem}")
    return listed


# Ending a trial ------------------------------------------------------------------------------------------
@contextlib.contextmanager
def tracked(pid: int, token: str | None = None) -> Iterator[None]:
    """Register the trial child ``pid`` (and its trial's ``token``) while the block runs, for :func:`kill_all`."""
    with _lock:
        _live[pid] = token
    try:
        yield
    finally:
        with _lock:
            _live.pop(pid, None)


def wait_contained(proc: subprocess.Popen[bytes], token: str, timeout_s: float | None) -> int | None:
    """The exit status of the trial child ``proc``; None when it ran past ``timeout_s`` (then its process group
    gets SIGTERM and :data:`KILL_GRACE_S` to exit).

    However the wait ends (an exit, the timeout, Ctrl-C, a cancel that kills it from another thread), every
    process of the trial is killed before this returns: a background job the child left running would hold a
    GPU or write into the next trial's files.
    """
    try:
        with tracked(proc.pid, token):
            try:
                return proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(KILL_GRACE_S)
                return None
    finally:
        kill_tree(proc.pid, token)
        proc.wait()


def read_tail(path: Path, limit: int) -> str:
    """The last ``limit`` bytes of the file a trial's output went to, decoded leniently (a cut may split a
    character)."""
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - limit))
        return f.read().decode("utf-8", errors="replace")


def kill_all() -> int:
    """Kill every registered trial, as an interrupted or cancelled run must; returns how many there were."""
    with _lock:
        live = list(_live.items())
    for pid, token in live:
        kill_tree(pid, token)
    return len(live)


def kill_tree(pid: int, token: str | None = None) -> None:
    """SIGKILL the child ``pid`` and everything of its trial, then reap what became ours.

    Killed: ``pid``, its process group, its descendants and, given its trial's ``token``, every process of
    ours that carries the token or sits in the session ``pid`` leads (orphans re-parented to us). ``pid`` is
    left for its owner (a Popen, a multiprocessing.Process) to reap.
    """
    killed: set[int] = set()
    for _ in range(_SWEEPS):
        found = {p.pid: p for p in _members(pid, token) if p.pid not in killed}
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)  # when it does not lead its group (a pool's worker)
        for process in found.values():
            with contextlib.suppress(psutil.Error):
                process.kill()
        killed.update(found)
        if not found:
            break
    _reap(killed - {pid}, parents=killed | {pid})


def _members(pid: int, token: str | None) -> list[psutil.Process]:
    """The processes of ``pid``'s trial: its descendants and, with ``token``, our descendants that belong to it."""
    found = _descendants(pid)
    if token is not None:
        found += [p for p in _descendants(os.getpid()) if p.pid != pid and _belongs(p, pid, token)]
    return found


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


def _belongs(process: psutil.Process, pid: int, token: str) -> bool:
    """Whether ``process`` is of the trial whose child is ``pid``: it carries the token, or it is in the trial's
    session (a zombie's environment cannot be read; its session can, and the kernel keeps a session's id
    from being reused while any member exists)."""
    return _session(process.pid) == pid or _token(process) == token


def _session(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


def _token(process: psutil.Process) -> str | None:
    try:
        return process.environ().get(TOKEN_ENV)
    except psutil.Error:  # gone, a zombie, or not ours to read
        return None


def _reap(pids: set[int], parents: set[int]) -> None:
    """Collect the exit status of the killed ``pids`` that are, or are about to become, our children.

    A killed orphan re-parented to us stays a zombie until we wait for it. Only these pids are waited for:
    ``waitpid(-1)`` would take the exit status a Popen object elsewhere is waiting for. ``parents`` are the
    killed processes whose zombie children will be re-parented to us as they die.
    """
    pending = set(pids)
    deadline = time.monotonic() + _REAP_WITHIN_S
    while True:
        pending = {pid for pid in pending if not _settled(pid, parents)}
        if not pending or time.monotonic() >= deadline:
            return
        time.sleep(0.01)


def _settled(pid: int, parents: set[int]) -> bool:
    """Whether ``pid`` needs nothing more from us: just reaped, gone, or the zombie of a process that is not
    dying with it (that process, or init, reaps it)."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:  # not our child (yet)
        pass
    try:
        process = psutil.Process(pid)
        return process.status() == psutil.STATUS_ZOMBIE and process.ppid() not in parents
    except psutil.Error:
        return True


# After a crash -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Leftovers:
    """What :func:`clean_leftovers` cleaned. False when it found nothing."""

    folders: int = 0
    processes: int = 0

    def __bool__(self) -> bool:
        return bool(self.folders or self.processes)

    def __str__(self) -> str:
        return f"removed {self.folders} trial folder(s), killed {self.processes} process(es)"


@dataclass(frozen=True)
class _Owner:
    pid: int
    create_time: float
    token: str


def clean_leftovers() -> Leftovers:
    """Kill what the trials of dead runs left running and remove their folders (after ``kill -9``, a crash).

    A trial folder is a leftover when the process its name names is gone, or its pid now belongs to another
    process; a folder whose name names no owner (an older tunesmith made it) when it is over an hour old.
    Folders of live runs and of other users are left alone; so are processes of other users, unless we are root
    (whose sandboxed programs run as ``nobody``) and they carry a dead run's token.
    """
    leftovers = [(folder, owner) for folder, owner in _trial_folders() if _is_leftover(folder, owner)]
    tokens = {owner.token for _, owner in leftovers if owner is not None}
    killed = _kill_carriers(tokens) if tokens else 0
    removed = sum(_remove(folder) for folder, _ in leftovers)
    return Leftovers(folders=removed, processes=killed)


def _trial_folders() -> list[tuple[Path, _Owner | None]]:
    """This user's trial folders in the temporary directory, each with its owner when its name gives one."""
    found = []
    for folder in Path(tempfile.gettempdir()).glob(f"{FOLDER_PREFIX}*"):
        with contextlib.suppress(OSError):
            if folder.is_dir() and folder.stat().st_uid == os.getuid():
                found.append((folder, _owner_of(folder)))
    return found


def _owner_of(folder: Path) -> _Owner | None:
    named = _OWNED_FOLDER.fullmatch(folder.name)
    if named is None:  # made by an older tunesmith
        return None
    pid, started_ms, token = named.groups()
    return _Owner(int(pid), int(started_ms) / 1000, token)


def _is_leftover(folder: Path, owner: _Owner | None) -> bool:
    if owner is not None:
        return not _alive(owner)
    try:
        return time.time() - folder.stat().st_mtime > _UNOWNED_FOLDER_AGE_S
    except OSError:
        return False


def _alive(owner: _Owner) -> bool:
    try:
        process = psutil.Process(owner.pid)
        started = process.create_time()
        zombie = process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # cannot tell: leave its folder alone
        return True
    return not zombie and abs(started - owner.create_time) <= _START_TIME_SLACK_S


def _kill_carriers(tokens: set[str]) -> int:
    """SIGKILL every process that carries one of ``tokens`` and is ours to kill; returns how many.

    Root's sandboxed programs run as another user (``nobody``), so root kills carriers of any user: a token is
    a random 128-bit name that only our trials hand out. Anyone else kills only their own processes.
    """
    me, uid = os.getpid(), os.getuid()
    anyone = os.geteuid() == 0
    killed: set[int] = set()
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if process.pid != me and (anyone or process.uids().real == uid) and _token(process) in tokens:
                process.kill()
                killed.add(process.pid)
    _reap(killed, parents=killed)
    return len(killed)


def _remove(folder: Path) -> int:
    shutil.rmtree(folder, ignore_errors=True)
    return 0 if folder.exists() else 1

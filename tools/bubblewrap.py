"""bubblewrap (``bwrap``): the sandbox's strong confinement, where it is installed and the kernel lets it work.

A candidate program may double-fork into a daemon with a clean environment, signal or read other processes of
the user it runs as, leave files in ``/tmp`` and ``/dev/shm``, or talk to a unix socket of the host. Tracking
its processes by token or session catches none of that, so where bubblewrap works each sandboxed run gets:

* a PID namespace (``--unshare-pid``): it sees and signals only its own processes, and when the run's first
  process ends the kernel kills every other one in it; ``--die-with-parent`` ends it with its evaluator;
* a filesystem of its own: a tmpfs root holding read-only binds of the system folders and the interpreter's,
  its copy and home read-write, a private ``/tmp`` and ``/dev/shm`` (tmpfs, bounded, gone with the run), a
  fresh ``/proc`` and ``/dev``. The user's home, the study's storage and the host's unix sockets are not in it;
* user, IPC, UTS, cgroup and (unless allowed) network namespaces.

bubblewrap is what Flatpak runs its applications in; Debian ships it as ``bubblewrap``. Where it is missing or
refused, :func:`bubblewrap` says why and the sandbox falls back to its own, weaker confinement, saying so in
every trial's feedback.
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: Set to a path to use that bwrap; set to ``none`` to go without (to compare, or where it misbehaves).
BWRAP_ENV = "TUNESMITH_BWRAP"
#: How a user gets it, as the notes say it.
INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap)"
#: System folders bound read-only (or recreated as the links they are, on a merged-/usr system).
SYSTEM_FOLDERS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
#: Device nodes a GPU program needs, bound when present.
GPU_DEVICES = ("/dev/nvidia*", "/dev/dri", "/dev/kfd")
_PROBE_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Bubblewrap:
    """A bwrap that was seen to work here, as the user the sandbox runs programs as."""

    path: str

    def argv(
        self,
        command: Sequence[str],
        *,
        writable: Sequence[Path],
        readable: Sequence[Path],
        cwd: Path,
        network: bool,
        scratch_bytes: int | None,
    ) -> list[str]:
        """``command`` wrapped in bwrap: ``writable`` and ``readable`` folders bound where they are, ``cwd`` its
        working directory, ``/tmp`` and ``/dev/shm`` private tmpfs of at most ``scratch_bytes`` each."""
        args = [self.path, "--unshare-all", "--die-with-parent", "--new-session"]
        if network:
            args.append("--share-net")
        args += _system_binds()
        args += ["--proc", "/proc", "--dev", "/dev"]
        for device in sorted(d for pattern in GPU_DEVICES for d in glob.glob(pattern)):
            args += ["--dev-bind", device, device]
        for scratch in ("/tmp", "/dev/shm"):
            if scratch_bytes is not None:
                args += ["--size", str(scratch_bytes)]
            args += ["--tmpfs", scratch]
        for folder in _outermost(readable):
            args += ["--ro-bind", str(folder), str(folder)]
        for folder in writable:
            args += ["--bind", str(folder), str(folder)]
        return [*args, "--chdir", str(cwd), "--", *command]


def bubblewrap(user: tuple[int, int] | None) -> Bubblewrap | str:
    """The working bwrap, or why there is none (a sentence ending in what to do).

    It is tried once per process, bwrap and ``user`` (the uid and gid programs run as; None: ours), running
    ``true`` in a sandbox as that user: a bwrap that is installed but refused by the kernel (user namespaces
    switched off, a container without them) falls back like a missing one.
    """
    configured = os.environ.get(BWRAP_ENV)
    if configured is not None and configured.lower() == "none":
        return f"bubblewrap switched off ({BWRAP_ENV}=none)"
    path = configured or shutil.which("bwrap")
    if path is None:
        return f"bubblewrap (bwrap) is not installed: {INSTALL_HINT}"
    return _probe(path, user)


@functools.cache
def _probe(path: str, user: tuple[int, int] | None) -> Bubblewrap | str:
    tool = Bubblewrap(path)
    probe = tool.argv(["true"], writable=(), readable=(), cwd=Path("/"), network=False, scratch_bytes=1 << 20)
    become = None if user is None else functools.partial(_become, user)
    try:
        done = subprocess.run(
            probe, capture_output=True, text=True, timeout=_PROBE_TIMEOUT_S, preexec_fn=become, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"bubblewrap ({path}) cannot start: {exc}"
    if done.returncode != 0:
        why = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit status {done.returncode}"
        return f"bubblewrap ({path}) is refused here ({why}): user namespaces may be switched off"
    return tool


def _become(user: tuple[int, int]) -> None:
    """In the probe's child: become the sandbox user, as a sandboxed run does before it starts bwrap."""
    os.setgroups([])
    os.setgid(user[1])
    os.setuid(user[0])


def _system_binds() -> list[str]:
    """The system folders: links (``/lib -> usr/lib``) recreated as links, folders bound read-only."""
    args: list[str] = []
    for folder in SYSTEM_FOLDERS:
        if os.path.islink(folder):
            args += ["--symlink", os.readlink(folder), folder]
        elif os.path.isdir(folder):
            args += ["--ro-bind", folder, folder]
    return args


def _outermost(folders: Sequence[Path]) -> list[Path]:
    """``folders`` without those inside another one of them, or inside a system folder already bound."""
    system = [Path(f) for f in SYSTEM_FOLDERS if os.path.isdir(f) and not os.path.islink(f)]
    unique = sorted(set(folders))
    return [
        f for f in unique if not any(f != o and f.is_relative_to(o) for o in [*unique, *system]) and f not in system
    ]

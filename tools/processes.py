"""The process trees evaluators start, so that a stopped run leaves none of them behind.

Evaluators that run something outside this process (a command, an objective with a timeout) register the
child while it runs. When a run is interrupted (Ctrl-C, SIGTERM) or cancelled, :func:`kill_all` ends every
registered child with its whole tree: the process group the child leads and every descendant psutil can
still see (a grandchild that started its own session escapes the group, not the tree).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_live: set[int] = set()


@contextlib.contextmanager
def tracked(pid: int) -> Iterator[None]:
    """Register the child ``pid`` (the leader of its own process group) while the block runs."""
    with _lock:
        _live.add(pid)
    try:
        yield
    finally:
        with _lock:
            _live.discard(pid)


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid``'s process group and every descendant of ``pid``."""
    import psutil

    try:
        descendants = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    for process in descendants:
        with contextlib.suppress(psutil.Error):
            process.kill()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def kill_all() -> int:
    """Kill every registered child tree; returns how many there were."""
    with _lock:
        pids = list(_live)
    for pid in pids:
        kill_tree(pid)
    return len(pids)

"""Stopping the tool calls that run in worker threads the way Ctrl-C stops ``tunesmith run``.

Why: a client that disconnects during ``run_trials`` must leave what ``tunesmith run`` leaves when it gets
SIGTERM: the running trials marked interrupted and none of their processes alive. The loop does that when a
``KeyboardInterrupt`` reaches it (:meth:`agent.loop.Coordinator._interrupt`); in the main thread a signal
raises one, but a tool call runs in a worker thread, which no signal reaches. So each call's thread is sent
one: CPython raises an exception set with ``PyThreadState_SetAsyncExc`` in that thread at its next bytecode,
and the trials' processes are killed (:func:`tools.processes.kill_all`) so that a thread waiting for a
child wakes up to receive it.

A call blocked inside C code that waits on nothing of ours (a ``time.sleep`` in a Python objective) gets
the exception when that code returns; :meth:`Calls.wait` bounds how long the server waits for it.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class Calls:
    """The calls running in worker threads, to interrupt together when the client is gone."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[int] = set()
        self._ended = threading.Condition(self._lock)
        self.interrupted = False

    def run(self, call: Callable[..., T], *args: object) -> T:
        """``call(*args)`` in this (worker) thread, which :meth:`interrupt` may interrupt while it runs.

        Raises:
            KeyboardInterrupt: the calls were interrupted (before this one started, or while it ran).
        """
        thread = threading.get_ident()
        with self._lock:
            if self.interrupted:
                raise KeyboardInterrupt
            self._running.add(thread)
        try:
            return call(*args)
        finally:
            with self._lock:
                self._running.discard(thread)
                if self.interrupted:  # an exception not delivered yet must not reach the thread's next task
                    _raise_in(thread, None)
                self._ended.notify_all()

    def interrupt(self) -> int:
        """Raise ``KeyboardInterrupt`` in every running call (once) and kill every trial's processes; returns
        how many calls were running."""
        from tools.processes import kill_all

        with self._lock:
            if self.interrupted:
                return len(self._running)
            self.interrupted = True
            running = list(self._running)
            for thread in running:
                _raise_in(thread, KeyboardInterrupt)
        kill_all()
        return len(running)

    def wait(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for every running call to end; whether they all did."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._running:
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning("%d calls still running after %.0fs; leaving them", len(self._running), timeout_s)
                    return False
                self._ended.wait(left)
        return True


def _raise_in(thread: int, exception: type[BaseException] | None) -> None:
    """Have ``exception`` raised in ``thread`` at its next bytecode; None takes back one not raised yet."""
    raised = None if exception is None else ctypes.py_object(exception)  # None is passed as NULL: take back
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread), raised)

"""Is the worker that left a trial running still alive?

On the same host the process table is the truth: a worker whose PID is gone, is a zombie, or now
belongs to another process (PID reuse: the process start time differs) is dead, and one whose process
exists is alive *however old its heartbeat* — a stopped laptop, a paused VM or an objective holding the
GIL stalls heartbeats without ending the trial. Across hosts only the heartbeat can tell.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

from agent.storage.records import STALE_AFTER_S

#: Process start times are compared to this precision (psutil derives them from clock ticks).
_START_TIME_TOLERANCE_S = 1.0


@dataclass(frozen=True)
class WorkerIdentity:
    """What storage keeps of a worker process to judge, later, whether it is still alive."""

    hostname: str
    pid: int
    process_started_at: float | None

    @classmethod
    def of_this_process(cls) -> WorkerIdentity:
        return cls(socket.gethostname(), os.getpid(), process_start_time(os.getpid()))


def process_start_time(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), or None when it does not exist."""
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:
        return 0.0  # it exists; its start time is not ours to read


def is_dead(worker: WorkerIdentity | None, heartbeat_at: float | None, now: float | None = None) -> bool:
    """Whether the worker that runs a trial is gone (see the module docstring). Unknown workers are dead."""
    if worker is None or heartbeat_at is None:
        return True
    if worker.hostname != socket.gethostname():
        return (now if now is not None else time.time()) - heartbeat_at > STALE_AFTER_S
    import psutil

    try:
        process = psutil.Process(worker.pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return True
        started = process.create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return True
    except psutil.AccessDenied:
        return False
    if worker.process_started_at is None or worker.process_started_at == 0.0:
        return False
    return abs(started - worker.process_started_at) > _START_TIME_TOLERANCE_S

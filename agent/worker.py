"""The identity of this process as a worker of a study, kept alive by a heartbeat.

Storage decides whether a running trial was orphaned by looking at its worker: a worker whose heartbeat
stopped (or whose process is gone) left it behind. The heartbeat runs in a daemon thread so that it keeps
beating while the objective runs.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid

from agent.storage import STALE_AFTER_S, Storage

log = logging.getLogger(__name__)


class WorkerLease:
    """Registers this process once per storage and beats every ``STALE_AFTER_S / 6`` seconds."""

    def __init__(self, storage: Storage) -> None:
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._storage = storage
        self._stop = threading.Event()
        storage.register_worker(self.id)
        self._thread = threading.Thread(target=self._beat, name=f"tunesmith-heartbeat-{self.id}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(STALE_AFTER_S / 6):
            try:
                self._storage.heartbeat(self.id)
            except Exception as exc:  # the next beat may succeed; a missed one is not fatal
                log.warning("heartbeat of worker %s failed: %s", self.id, exc)

    def stop(self) -> None:
        self._stop.set()

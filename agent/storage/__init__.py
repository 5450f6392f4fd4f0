"""Durable storage of studies, trials, artifacts and model calls (the RECORD stage of the loop).

:class:`Storage` is the protocol; :class:`SQLStorage` (SQLite, PostgreSQL) and :class:`InMemoryStorage`
implement it. :func:`open_storage` turns a URL into the right one.
"""

from __future__ import annotations

from agent.storage.base import Changes, Storage
from agent.storage.memory import InMemoryStorage
from agent.storage.records import (
    DEFAULT_STORAGE,
    STALE_AFTER_S,
    LLMCallRecord,
    ProposalConflict,
    Spend,
    StorageError,
    StorageUnavailable,
    StorageURLError,
    StudyEvent,
    StudyExists,
    StudyRecord,
    TrialBudgetReached,
)
from agent.storage.sql import SQLStorage

#: The URL of a throwaway in-process storage.
MEMORY_URL = "memory:"


def open_storage(storage: Storage | str = DEFAULT_STORAGE, create: bool = True) -> Storage:
    """The storage a URL names (``sqlite:///file.db``, ``postgresql://...``, ``memory:``), or ``storage`` itself.

    Args:
        create: create a missing SQLite file (readers pass False, so a typo leaves no empty file behind).
    """
    if isinstance(storage, Storage):
        return storage
    if storage == MEMORY_URL:
        return InMemoryStorage()
    return SQLStorage(storage, create=create)


__all__ = [
    "DEFAULT_STORAGE",
    "MEMORY_URL",
    "STALE_AFTER_S",
    "Changes",
    "InMemoryStorage",
    "LLMCallRecord",
    "ProposalConflict",
    "SQLStorage",
    "Spend",
    "Storage",
    "StorageError",
    "StorageURLError",
    "StorageUnavailable",
    "StudyEvent",
    "StudyExists",
    "StudyRecord",
    "TrialBudgetReached",
    "open_storage",
]

"""What storage hands out and takes in, whatever the backend: plain frozen records and its errors."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from agent.errors import BudgetExhausted, ConfigError, TunesmithError
from agent.secrets import redact, redact_data

DEFAULT_STORAGE = "sqlite:///tunesmith.db"
#: A worker on another host whose heartbeat is older than this is taken for dead.
STALE_AFTER_S = 120.0


class StorageError(TunesmithError, RuntimeError):
    """The storage cannot be used as asked (wrong URL, newer schema, unknown study...)."""


class StorageURLError(StorageError, ConfigError):
    """The storage URL itself is wrong (an unknown kind of database, a driver that is not installed): bad
    input, not a failing environment."""

    def __init__(self, message: str) -> None:
        ConfigError.__init__(self, message, field="storage")


class StorageUnavailable(StorageError):
    """The database failed under us (unreachable, read-only, a full or failing disk): the environment is at
    fault, not the input; the transaction that failed was rolled back, everything before it is kept."""


class StudyExists(StorageError):
    """A study of that name is already stored (another process may have created it a moment ago)."""


class TrialBudgetReached(BudgetExhausted):
    """No trial was started: the study already holds its budgeted number of trials."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the study already holds its budget of {limit} trials", reason="trial budget")


class ProposalConflict(StorageError):
    """A proposal was not stored: trials started since it was made include (nearly) the same point.

    The caller proposes again with those trials as pending points, so that concurrent workers and
    processes never evaluate one point twice.
    """


@dataclass(frozen=True)
class LLMCallRecord:
    """One model call as stored: what was asked, what came back, what it cost. Never holds a secret.

    ``trial_number`` is the trial a call was made *for* (an evaluator's task-model call); ``trial_numbers``
    (filled when reading) are the trials whose candidates the call *produced*.
    """

    purpose: str
    model: str
    messages: list[dict[str, str]]
    reply: str | None = None
    parsed: Any = None
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usd: float = 0.0
    latency_s: float = 0.0
    attempts: int = 1
    mode: str | None = None
    trial_number: int | None = None
    id: int | None = None
    created_at: float = 0.0
    trial_numbers: tuple[int, ...] = ()

    def redacted(self) -> LLMCallRecord:
        """This record with every known secret scrubbed from its texts (a server may echo the key back)."""
        return replace(
            self,
            messages=redact_data(self.messages),
            reply=redact(self.reply),
            parsed=redact_data(self.parsed),
            error=redact(self.error),
        )


@dataclass(frozen=True)
class Spend:
    """What a study's model calls have cost so far."""

    calls: int = 0
    failed_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usd: float = 0.0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class StudyRecord:
    """A study as stored: identity and settings, not its trials."""

    id: int
    name: str
    direction: str
    metric: str | None
    space: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0


@dataclass(frozen=True)
class StudyEvent:
    """One act of steering a study (narrow a range, pin a parameter, a note...), as stored.

    Events are kept, never deleted: an undone one carries ``undone_at``, so that what was in force when
    an older trial started can still be told.

    Attributes:
        kind: ``"narrow"``, ``"fix"``, ``"free"``, ``"add_choice"``, ``"remove_choice"`` or ``"note"``.
        payload: what the event says (JSON-able), e.g. ``{"name": "lr", "low": 1e-4, "high": 1e-2}``.
        author: who steered (``"api"``, a user name, ``"mcp"``...).
        created_at: when it was stored (seconds since the epoch).
        undone_at: when it was undone; None while it is in force.
    """

    id: int
    kind: str
    payload: dict[str, Any]
    author: str
    created_at: float
    undone_at: float | None = None

    @property
    def active(self) -> bool:
        return self.undone_at is None

    def in_force_at(self, moment: float) -> bool:
        """Whether the event applied at ``moment``: stored before it and not undone by then."""
        return self.created_at <= moment and (self.undone_at is None or self.undone_at > moment)

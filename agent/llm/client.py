"""The one protocol every model backend answers, and the JSON extraction they share.

Backends differ in how they get text out of a model (an HTTP API, llama.cpp, transformers); what the
rest of tunesmith needs is the same: the reply text, the JSON parsed from it when a schema was asked for,
token counts for the budget, and the latency for the transcript. Whatever the backend, callers validate
the parsed JSON again in Python: constrained decoding is not trusted alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

from agent.errors import TunesmithError

#: A chat message: ``{"role": "system" | "user" | "assistant", "content": "..."}``.
Message = Mapping[str, str]


class LLMError(TunesmithError, RuntimeError):
    """A model call that failed for good (retries exhausted, server gone, unusable reply).

    ``attempts`` counts the requests made (0 when none was: a budget refused the call). ``call_id`` is the
    stored record of the failed call, set by the :class:`~agent.llm.gateway.ModelGateway` that stored it.
    """

    def __init__(self, message: str, attempts: int = 1) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.call_id: int | None = None


@dataclass(frozen=True)
class Completion:
    """One model reply.

    Attributes:
        text: the raw reply.
        parsed: the JSON value parsed from ``text`` when a schema was given and parsing worked, else None.
        parse_error: why ``parsed`` is None although a schema was given.
        prompt_tokens, completion_tokens: as reported by the backend (estimated when it reports none).
        latency_s: wall time of the call, retries included.
        model: the model that answered.
        attempts: requests made, 1 when the first one succeeded.
        mode: how structure was requested: ``"json_schema"``, ``"json_object"``, ``"grammar"`` or ``"text"``.
        call_id: the stored record of this call; set by the :class:`~agent.llm.gateway.ModelGateway`, which
            stores every call (a backend leaves it None).
    """

    text: str
    parsed: Any
    parse_error: str | None
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    model: str
    attempts: int = 1
    mode: str = "text"
    call_id: int | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@runtime_checkable
class LLMClient(Protocol):
    """A chat model. ``complete`` raises :class:`LLMError` when no reply could be had at all.

    ``timeout_s`` is the most the call may take (what is left of a run's wall time), None for the backend's
    own limits only. A backend must end the call by then: with an :class:`LLMError` when no reply came,
    or with what it has (a generation stopped early, ``parse_error`` set when its JSON is incomplete).
    """

    model: str

    def complete(
        self,
        messages: Sequence[Message],
        schema: Mapping[str, Any] | None = None,
        temperature: float = 0.7,
        max_tokens: int = 1024,
        *,
        timeout_s: float | None = None,
    ) -> Completion: ...


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)
#: Prose is scanned for embedded JSON only this far, from this many starting brackets: a pathological
#: reply (a megabyte of "{") must cost milliseconds, not minutes.
_MAX_SCAN_CHARS = 65536
_MAX_SCAN_STARTS = 64


def extract_json(text: str) -> Any:
    """The first JSON object or array in ``text``: bare, inside a ```json fence, or inside prose.

    Raises:
        ValueError: no JSON value could be found; the message says what was seen.
    """
    stripped = text.strip()
    if not stripped:
        raise ValueError("the reply is empty")
    try:
        return json.loads(stripped)
    except (json.JSONDecodeError, RecursionError):
        pass
    scanned = stripped[:_MAX_SCAN_CHARS]
    for block in _FENCE.findall(scanned):
        try:
            return json.loads(block.strip())
        except (json.JSONDecodeError, RecursionError):
            continue
    decoder = json.JSONDecoder()
    for i, match in enumerate(re.finditer(r"[\[{]", scanned)):
        if i == _MAX_SCAN_STARTS:
            break
        try:
            value, _ = decoder.raw_decode(scanned, match.start())
        except (json.JSONDecodeError, RecursionError):
            continue
        return value
    preview = stripped[:80] + ("..." if len(stripped) > 80 else "")
    raise ValueError(f"no JSON object found in the reply ({len(stripped)} characters: {preview!r})")


def estimate_tokens(text: str) -> int:
    """A backend-free token estimate (about four characters a token), for budgets and prompt sizing."""
    return max(1, (len(text) + 3) // 4)


def display_url(url: str) -> str:
    """``url`` without user:password, which must not reach messages or logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    try:
        if parts.port is not None:
            netloc += f":{parts.port}"
    except ValueError:
        pass
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

"""A model that answers from a script: the test double for everything that calls an :class:`LLMClient`.

A real model produces malformed JSON, out-of-bounds values or a dead connection only by chance; a test
must be able to ask for each. :class:`ScriptedClient` replies with the texts it is given, in order, raises
the exceptions among them, and keeps every request it got, so a test can assert both what was asked
(messages, schema, ``max_tokens`` after a budget cut) and how the caller dealt with the answer::

    from agent.testing.scripted import ScriptedClient, schema_reply

    client = ScriptedClient(['{"candidates": []}', LLMError("server gone", attempts=3)], default=schema_reply())
    ...
    assert client.requests[0].max_tokens == 1024

It behaves as a backend does where that matters to callers: without a schema the text comes back
unparsed; with one, the JSON found in the text is parsed (``parse_error`` says why not); a reply longer
than ``max_tokens`` is cut there. It passes :class:`agent.testing.llm.LLMBackendContract`.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent.llm.client import Completion, LLMError, Message, estimate_tokens, extract_json
from agent.testing.misbehaving_server import sample_from_schema

__all__ = ["Reply", "ScriptedClient", "ScriptedRequest", "schema_reply"]


@dataclass(frozen=True)
class ScriptedRequest:
    """One call as the client received it (``timeout_s``: the time limit the caller gave it, if any)."""

    messages: list[dict[str, str]]
    schema: Mapping[str, Any] | None
    temperature: float
    max_tokens: int
    timeout_s: float | None = None


#: A scripted answer: the reply text, an exception to raise, or a function of the request giving the text.
Reply = str | BaseException | Callable[[ScriptedRequest], str]


def schema_reply(seed: int = 0) -> Callable[[ScriptedRequest], str]:
    """A reply for ``default``: a random valid answer to whatever schema was asked (``{}`` without one)."""
    rng = random.Random(seed)
    lock = threading.Lock()

    def reply(request: ScriptedRequest) -> str:
        with lock:
            return json.dumps(sample_from_schema(request.schema, rng) if request.schema is not None else {})

    return reply


class ScriptedClient:
    """An :class:`~agent.llm.client.LLMClient` that answers from ``replies``, then with ``default``.

    Args:
        replies: answers for the first calls, in order (see :data:`Reply`); :meth:`push` adds more.
        default: the answer once the script is used up; None raises :class:`LLMError` then, as a model
            that cannot be reached does.
        model: the model name it reports.
        prompt_tokens, completion_tokens: the counts to report; None estimates them from the text (about
            four characters a token), as a server reports its own.
        mode: the structured-output mode reported for calls with a schema.

    Attributes:
        requests: every call received, oldest first (:class:`ScriptedRequest`), failed ones included.
    """

    def __init__(
        self,
        replies: Iterable[Reply] = (),
        *,
        default: Reply | None = None,
        model: str = "scripted",
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        mode: str = "json_schema",
    ) -> None:
        self.model = model
        self.default = default
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.mode = mode
        self.requests: list[ScriptedRequest] = []
        self._script: list[Reply] = list(replies)
        self._lock = threading.Lock()

    def push(self, *replies: Reply) -> None:
        """Append answers to the script."""
        with self._lock:
            self._script.extend(replies)

    @property
    def remaining(self) -> int:
        """Scripted answers not yet given."""
        with self._lock:
            return len(self._script)

    def complete(
        self,
        messages: Sequence[Message],
        schema: Mapping[str, Any] | None = None,
        temperature: float = 0.7,
        max_tokens: int = 1024,
        *,
        timeout_s: float | None = None,
    ) -> Completion:
        """The next scripted answer. It comes at once, so ``timeout_s`` is met; it is kept in the request."""
        start = time.monotonic()
        request = ScriptedRequest([dict(m) for m in messages], schema, temperature, max_tokens, timeout_s)
        with self._lock:
            self.requests.append(request)
            reply = self._script.pop(0) if self._script else self.default
            answered = len(self.requests) - 1
        if reply is None:
            raise LLMError(f"scripted client: no reply scripted for call {answered + 1}")
        if isinstance(reply, BaseException):
            raise reply
        text = reply if isinstance(reply, str) else reply(request)
        prompt = self.prompt_tokens
        if prompt is None:
            prompt = estimate_tokens("\n".join(m["content"] for m in request.messages))
        used = self.completion_tokens if self.completion_tokens is not None else estimate_tokens(text)
        cut = used > max_tokens
        if cut:  # a model stops at max_tokens, whatever it meant to say
            text, used = text[: max_tokens * 4], max_tokens
        parsed: Any = None
        parse_error: str | None = None
        if schema is not None:
            try:
                parsed = extract_json(text)
            except ValueError as exc:
                parse_error = f"reply cut at max_tokens={max_tokens} ({exc})" if cut else str(exc)
        return Completion(
            text=text,
            parsed=parsed,
            parse_error=parse_error,
            prompt_tokens=prompt,
            completion_tokens=used,
            latency_s=time.monotonic() - start,
            model=self.model,
            mode=self.mode if schema is not None else "text",
        )

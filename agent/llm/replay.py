"""Replays a study's recorded model calls, so a run can be reproduced exactly without the model.

Calls are answered in the order they were recorded. With the same seed, space and objective, a study
asks the same questions in the same order, so it gets the same answers and makes the same proposals. A
question that differs from the recorded one is logged: the replay then no longer reproduces the run.
Calls refused by a budget were never made, so they are not recorded and not replayed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from agent.llm.client import Completion, LLMError, Message
from agent.storage import LLMCallRecord, Storage

log = logging.getLogger(__name__)


class ReplayClient:
    """Answers with the replies recorded for study ``study_name`` in ``storage``."""

    def __init__(self, storage: Storage, study_name: str) -> None:
        record = storage.get_study(study_name)
        if record is None:
            raise LLMError(f"replay: no study named {study_name!r} in {storage.url}")
        self._calls: list[LLMCallRecord] = storage.llm_calls(record.id)
        if not self._calls:
            raise LLMError(f"replay: study {study_name!r} has no recorded model calls")
        self.model = self._calls[0].model
        self._next = 0
        self._lock = threading.Lock()  # concurrent callers must each get their own recorded call

    def complete(
        self,
        messages: Sequence[Message],
        schema: Mapping[str, Any] | None = None,
        temperature: float = 0.7,
        max_tokens: int = 1024,
        *,
        timeout_s: float | None = None,
    ) -> Completion:
        """The next recorded reply; ``timeout_s`` is met by answering at once, as a replay does."""
        with self._lock:
            if self._next >= len(self._calls):
                raise LLMError(f"replay: all {len(self._calls)} recorded calls have been used")
            call = self._calls[self._next]
            self._next += 1
            number = self._next
        if [dict(m) for m in messages] != call.messages:
            log.warning("replay: call %d was asked a different question than recorded", number)
        if call.reply is None:
            raise LLMError(f"replay: recorded failure: {call.error}", attempts=call.attempts)
        return Completion(
            text=call.reply,
            parsed=call.parsed,
            parse_error=call.error,
            prompt_tokens=call.prompt_tokens,
            completion_tokens=call.completion_tokens,
            latency_s=0.0,
            model=call.model,
            attempts=call.attempts,
            mode="replay",
        )

"""Replays a study's recorded model calls, so a run can be reproduced exactly without the model.

Calls are answered in the order they were recorded. With the same seed, space and objective, a study
asks the same questions in the same order, so it gets the same answers and makes the same proposals. A
question that differs from the recorded one is logged: the replay then no longer reproduces the run.
Calls refused by a budget were never made, so they are not recorded and not replayed.

A study whose evaluator calls a model (a task model scoring prompts) recorded two streams, whose
interleaving depends on timing (the next proposal is prepared while a trial is evaluated): the optimizer's
calls and the task model's (:data:`TASK_PURPOSES`). Each role replays its own stream, and a task call is
answered by the first unused recorded call that asked the same question, so the order in which trials
reached the task model does not matter.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from agent.llm.client import Completion, LLMError, Message
from agent.llm.spec import Role
from agent.storage import LLMCallRecord, Storage

log = logging.getLogger(__name__)


#: Purposes of the calls a task model makes for an evaluator (the rest are the optimizer's).
TASK_PURPOSES = frozenset({"evaluate", "test"})
#: The purpose of the calls ``tunesmith chat`` makes: a conversation, not part of a run, never replayed.
CHAT_PURPOSE = "chat"


class ReplayClient:
    """Answers with the replies recorded for study ``study_name`` in ``storage``, for the model's ``role``."""

    def __init__(self, storage: Storage, study_name: str, role: Role = "optimizer") -> None:
        record = storage.get_study(study_name)
        if record is None:
            raise LLMError(f"replay: no study named {study_name!r} in {storage.url}")
        task = role == "task"
        self._calls: list[LLMCallRecord] = [
            call
            for call in storage.llm_calls(record.id)
            if call.purpose != CHAT_PURPOSE and (call.purpose in TASK_PURPOSES) == task
        ]
        if not self._calls:
            kind = "task-model" if task else "model"
            raise LLMError(f"replay: study {study_name!r} has no recorded {kind} calls")
        self.model = self._calls[0].model
        self._by_question = task
        self._used = [False] * len(self._calls)
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
        asked = [dict(m) for m in messages]
        with self._lock:
            unused = [i for i, used in enumerate(self._used) if not used]
            if not unused:
                raise LLMError(f"replay: all {len(self._calls)} recorded calls have been used")
            same = (i for i in unused if self._calls[i].messages == asked) if self._by_question else iter(())
            index = next(same, unused[0])
            self._used[index] = True
            call = self._calls[index]
        if asked != call.messages:
            log.warning("replay: call %d was asked a different question than recorded", index + 1)
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

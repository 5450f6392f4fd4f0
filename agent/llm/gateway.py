"""The one door every model call of a study goes through: budget check, call, price, record.

Why one door: a proposer, a repair turn and an evaluator that asks a model all spend the same study's
tokens and dollars, and each call must be on record (what was asked, what came back, what it cost) for
the transcript, ``status`` and replay. Doing that in each caller is how calls went unrecorded and how a
``tokens = 1500`` budget stopped at 2,233 tokens: it was checked only *after* calls, between trials.

So the budget is checked *before* the call. The prompt is estimated conservatively (about one token per
three characters of the JSON-serialized messages and schema; tokenizers average nearer four), a call whose
prompt alone does not fit is refused with :class:`ModelBudgetExhausted` without a request, and
``max_tokens`` is cut to what is left, in tokens and in dollars. A backend that honours ``max_tokens`` (all
of them do) then cannot take the study past its budget. Within one process the check, the call and the
record happen under one lock while a token or money limit applies, so two threads cannot both pass the
check on the same remainder; processes sharing a study each check against the stored spend, and may
together overrun it by at most the calls they have in flight.

Time is budgeted the same way: a run's ``wall_time`` must bound the run, model calls included, so each call
is given what is left of it (``deadline``, set by the study for each run) as the backend's ``timeout_s``,
and a call with too little left is refused without a request. What a call is recorded with, and what
reaches the model, is scrubbed of every known secret (:mod:`agent.secrets`): an objective's stderr quoted in
a prompt, or a server echoing its Authorization header, must not carry a key into a prompt or the store.
A reply the caller cannot use (``check``) is recorded as a failed call, so that ``status`` counts it so.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from typing import Any

from agent.budget import Budget
from agent.errors import BudgetExhausted
from agent.llm.client import Completion, LLMClient, LLMError, Message
from agent.llm.pricing import Price, check_prices, price_of, warn_unpriced
from agent.secrets import redact, redact_data
from agent.storage import LLMCallRecord, Storage

log = logging.getLogger(__name__)

#: Characters per token in the pre-call prompt estimate; below the usual ~4 so the estimate runs high.
CHARS_PER_TOKEN = 3
#: A call that could not write even this many completion tokens (or ``max_tokens``, if smaller) is refused:
#: it would spend the rest of the budget on a reply cut too short to use.
MIN_COMPLETION_TOKENS = 16
#: A call with less of the run's wall time left than this is refused: no model answers that fast, and the
#: call would only be recorded as a model failure.
MIN_CALL_S = 0.5

#: What a caller's ``check`` says of a reply: why it cannot be used, or None when it can.
Check = Callable[[Completion], str | None]


class ModelBudgetExhausted(LLMError, BudgetExhausted):
    """A model call refused before any request: the study's token, money or call budget, or the run's wall time,
    cannot cover it.

    ``reason`` is ``"token budget"``, ``"money budget"``, ``"call budget"`` or ``"wall time"`` (a
    :class:`agent.loop.StopReason` value); ``attempts`` is 0. Callers fall back to a model-free proposal; the
    loop stops once the budget is spent.
    """

    def __init__(self, message: str, reason: str) -> None:
        BudgetExhausted.__init__(self, message, reason)
        self.attempts = 0
        self.call_id = None


def estimate_prompt_tokens(messages: Sequence[Message], schema: Mapping[str, Any] | None = None) -> int:
    """A deliberately high estimate of the prompt tokens of a call, for checking a budget before it."""
    size = len(json.dumps([dict(m) for m in messages], ensure_ascii=False))
    if schema is not None:
        size += len(json.dumps(schema, ensure_ascii=False))
    return math.ceil(size / CHARS_PER_TOKEN)


class ModelGateway:
    """A study's model: every call is budget-checked, made, priced and stored here.

    Args:
        client: the backend.
        storage: where calls are stored (:meth:`~agent.storage.Storage.record_llm_call`) and the study's
            spend is read from.
        study_id: the study the calls belong to.
        free: the model runs locally or replays a record: its calls cost $0 and need no price.
        prices: the study's own prices, ``{model: (input, output)}`` USD per million tokens (or
            ``{model: {"input": .., "output": ..}}``), over :mod:`agent.llm.pricing`'s table.

    Attributes:
        model: the client's model name.
        budget: the limits the next calls must fit in (the study sets it for each ``optimize``); its
            ``tokens`` and ``usd`` are study-wide totals, compared with ``storage.spend(study_id)``.
        deadline: when (``time.monotonic()``) the current run's wall time ends, None without one; each
            call is cut to end by then (the study sets it with ``budget``).
        refused: the reason (``"token budget"``, ``"money budget"``, ``"wall time"``) of the last call
            refused under the current budget, else None. A refused call leaves the stored spend *below* the
            budget, so a loop that stops on spend alone would never stop: it reads this too. Setting
            ``budget`` clears it.
    """

    def __init__(
        self,
        client: LLMClient,
        storage: Storage,
        study_id: int,
        *,
        free: bool,
        prices: Mapping[str, Any] | None = None,
    ) -> None:
        self.client = client
        self.storage = storage
        self.study_id = study_id
        self.free = free
        self.prices: dict[str, Price] = check_prices(prices)
        self.refused: str | None = None
        self.deadline: float | None = None
        self._budget: Budget | None = None
        self._lock = threading.Lock()

    @property
    def model(self) -> str:
        return self.client.model

    @property
    def budget(self) -> Budget | None:
        return self._budget

    @budget.setter
    def budget(self, budget: Budget | None) -> None:
        self._budget = budget
        self.refused = None

    @property
    def supports_tools(self) -> bool:
        """Whether the backend takes ``tools`` (OpenAI-style function calling); else ask for JSON with a schema."""
        return bool(getattr(self.client, "supports_tools", False))

    def __repr__(self) -> str:
        return f"ModelGateway(model={self.model!r}, study_id={self.study_id}, free={self.free})"

    def complete(
        self,
        messages: Sequence[Message],
        schema: Mapping[str, Any] | None = None,
        *,
        purpose: str,
        temperature: float = 0.7,
        max_tokens: int = 1024,
        trial_number: int | None = None,
        check: Check | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> Completion:
        """One model call within the budget and the run's wall time, stored; the Completion comes back with
        ``call_id`` set, and with every known secret scrubbed from it, as it was stored.

        Args:
            purpose: why the call is made (``"propose"``, ``"repair"``, ``"evaluate"``, ``"chat"``...), for the
                record.
            max_tokens: the most the reply may use; cut to what the budget leaves.
            trial_number: the trial the call is made for (an evaluator's call), or None.
            check: the caller's verdict on a reply that parsed: why it cannot be used (stored as the call's
                error, so the call counts as failed), or None. Not called for a reply that did not parse,
                whose parse error is stored instead.
            tools: functions offered to the model, for a backend whose :attr:`supports_tools` is True.

        Raises:
            ModelBudgetExhausted: the budget or the wall time cannot cover the call; nothing was sent or stored.
            LLMError: the backend got no reply; the failed call is stored and the error's ``call_id`` set.
        """
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
        budget = self.budget
        limited = budget is not None and budget.limits_spend
        guard: AbstractContextManager[Any] = self._lock if limited else nullcontext()
        with guard:
            try:
                timeout_s = self._time_left()
                if budget is not None and limited:
                    offered = schema if tools is None else {"tools": list(tools)}  # tools take prompt tokens too
                    max_tokens = self._allowance(budget, messages, offered, max_tokens)
            except ModelBudgetExhausted as exc:
                self.refused = exc.reason
                raise
            extra = {} if tools is None else {"tools": tools}
            return self._call(messages, schema, purpose, temperature, max_tokens, timeout_s, trial_number, check, extra)

    # The budget -----------------------------------------------------------------------------------------
    def _time_left(self) -> float | None:
        """Seconds the call may take before the run's wall time ends (None: no limit), or a refusal."""
        if self.deadline is None:
            return None
        left = self.deadline - time.monotonic()
        if left < MIN_CALL_S:
            raise ModelBudgetExhausted(
                f"the run's wall time leaves {max(left, 0.0):.2f}s: not enough for a call of {self.model}",
                reason="wall time",
            )
        return left

    def _allowance(
        self, budget: Budget, messages: Sequence[Message], schema: Mapping[str, Any] | None, max_tokens: int
    ) -> int:
        """``max_tokens`` cut to what the budget leaves after the estimated prompt, or a refusal."""
        spend = self.storage.spend(self.study_id)
        if budget.model_calls is not None and spend.calls >= budget.model_calls:
            raise ModelBudgetExhausted(
                f"the call budget is spent ({spend.calls} of {budget.model_calls} model calls made)",
                reason="call budget",
            )
        prompt = estimate_prompt_tokens(messages, schema)
        floor = min(max_tokens, MIN_COMPLETION_TOKENS)
        allowed = max_tokens
        if budget.tokens is not None:
            left = budget.tokens - spend.tokens
            if left - prompt < floor:
                raise ModelBudgetExhausted(
                    f"the token budget leaves {max(left, 0)} tokens: not enough for a prompt of about {prompt} "
                    f"tokens and a reply ({spend.tokens} of {budget.tokens} spent)",
                    reason="token budget",
                )
            allowed = min(allowed, left - prompt)
        if budget.usd is not None:
            left_usd = budget.usd - spend.usd
            price = None if self.free else price_of(self.model, self.prices)
            if price is None and not self.free:
                warn_unpriced(self.model)
            input_price, output_price = price or (0.0, 0.0)
            after_prompt = left_usd - prompt * input_price / 1e6
            if left_usd <= 0 or after_prompt < floor * output_price / 1e6:
                raise ModelBudgetExhausted(
                    f"the money budget leaves ${max(left_usd, 0.0):.6g}: not enough for a call of {self.model} "
                    f"(${spend.usd:.6g} of ${budget.usd:.6g} spent)",
                    reason="money budget",
                )
            if output_price > 0:
                allowed = min(allowed, math.floor(after_prompt * 1e6 / output_price))
        if allowed < max_tokens:
            log.debug("max_tokens cut from %d to %d by the budget", max_tokens, allowed)
        return allowed

    # The call and its record ----------------------------------------------------------------------------
    def _call(
        self,
        messages: Sequence[Message],
        schema: Mapping[str, Any] | None,
        purpose: str,
        temperature: float,
        max_tokens: int,
        timeout_s: float | None,
        trial_number: int | None,
        check: Check | None,
        extra: Mapping[str, Any],
    ) -> Completion:
        asked: list[dict[str, str]] = redact_data([dict(m) for m in messages])
        start = time.monotonic()
        try:
            completion = self.client.complete(
                asked, schema=schema, temperature=temperature, max_tokens=max_tokens, timeout_s=timeout_s, **extra
            )
        except LLMError as exc:
            exc.call_id = self._record(
                LLMCallRecord(
                    purpose,
                    self.model,
                    asked,
                    error=str(exc) or type(exc).__name__,
                    latency_s=time.monotonic() - start,
                    attempts=exc.attempts,
                    trial_number=trial_number,
                )
            )
            raise
        except Exception as exc:  # a backend that breaks the protocol: still on record, then raised as is
            self._record(
                LLMCallRecord(
                    purpose,
                    self.model,
                    asked,
                    error=f"{type(exc).__name__}: {exc}",
                    latency_s=time.monotonic() - start,
                    trial_number=trial_number,
                )
            )
            raise
        usd = self._usd(completion)
        completion = replace(
            completion,
            text=redact(completion.text),
            parsed=redact_data(completion.parsed),
            parse_error=redact(completion.parse_error),
        )
        error, broken = completion.parse_error, None
        if error is None and check is not None:
            try:
                error = check(completion)
            except Exception as exc:  # the caller's bug: the call is still on record (it was spent), then raised
                error, broken = f"the reply's check raised {type(exc).__name__}: {exc}", exc
        call_id = self._record(
            LLMCallRecord(
                purpose,
                completion.model or self.model,
                asked,
                reply=completion.text,
                parsed=completion.parsed,
                error=error,
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
                usd=usd,
                latency_s=completion.latency_s,
                attempts=completion.attempts,
                mode=completion.mode,
                trial_number=trial_number,
            )
        )
        if broken is not None:
            raise broken
        return replace(completion, call_id=call_id)

    def _usd(self, completion: Completion) -> float:
        """The call's cost, at the price of the model that answered (a dated snapshot, a router's pick), else
        at the price of the model asked for."""
        if self.free:
            return 0.0
        price = price_of(completion.model, self.prices) if completion.model else None
        price = price or price_of(self.model, self.prices)
        if price is None:
            warn_unpriced(self.model)
            return 0.0
        return (completion.prompt_tokens * price[0] + completion.completion_tokens * price[1]) / 1e6

    def _record(self, call: LLMCallRecord) -> int:
        # Storage scrubs secrets from what it keeps (an error message may quote a reply that echoed a key).
        return self.storage.record_llm_call(self.study_id, call)

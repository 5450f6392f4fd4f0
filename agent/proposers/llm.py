"""The language-model proposer: the history goes in, candidates with a rationale come out.

One model call asks for a batch of ``k`` candidates as JSON (the schema of the space, enforced by the
backend where it can be); what does not fit the space is quoted back in one repair turn; duplicates of
past, pending and already-chosen points are dropped; a shortfall is filled by the partner proposer (BO).
Unused valid candidates are kept for the next asks, so a batch of ``k`` costs one call, not ``k``.

A model that fails (an error after the backend's retries, nothing usable twice in a row) is rested for a
growing number of proposals, so a dead server costs a few bounded attempts, not one per trial. A call the
budget refuses is no failure of the model: the partner proposes, quietly, and the loop stops once the
budget is spent. Nothing here raises into the study: the worst case is a proposal from the partner.

Calls go through the study's :class:`~agent.llm.gateway.ModelGateway`, which checks the budget, stores
each call (failed or not) and returns its id, so each trial can point at the call that produced it. The
candidates are validated as the gateway's ``check``, before the call is stored: a reply without one valid
candidate is recorded as a failed call, as it is to the proposer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.history import format_params, render_history
from agent.llm.client import Completion, LLMError, Message
from agent.llm.gateway import ModelBudgetExhausted
from agent.logs import announce_if_slow
from agent.proposers.base import Proposer, SeenPoints, StudyView
from agent.space import ParamValue, Space
from agent.trial import Proposal
from prompts import render

if TYPE_CHECKING:
    from agent.llm.gateway import ModelGateway

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CandidateCheck:
    """The outcome of reading one model reply against the space."""

    valid: list[tuple[dict[str, ParamValue], str | None]]
    problems: list[str]
    total: int


def batch_schema(space: Space, k: int) -> dict[str, Any]:
    """JSON Schema of a reply: ``{"candidates": [{"params": {...}, "rationale": "..."}]}``, 1 to ``k`` items."""
    return {
        "type": "object",
        "properties": {
            "candidates": {
                "type": "array",
                "minItems": 1,
                "maxItems": k,
                "items": {
                    "type": "object",
                    "properties": {"params": space.json_schema(), "rationale": {"type": "string", "maxLength": 300}},
                    "required": ["params", "rationale"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["candidates"],
        "additionalProperties": False,
    }


def read_candidates(space: Space, parsed: Any) -> CandidateCheck:
    """Validate every item of a parsed reply; accepts the schema's form and the common near-misses.

    A bare list of candidates, or a single candidate object, is read too: models drift, and rejecting
    a usable answer for its wrapper would waste the call.
    """
    items: Any = parsed
    if isinstance(parsed, Mapping) and "candidates" in parsed:
        items = parsed["candidates"]
    elif isinstance(parsed, Mapping):
        items = [parsed]
    if not isinstance(items, list):
        return CandidateCheck([], ['expected {"candidates": [...]}, a JSON array of candidates'], 0)
    if not items:
        return CandidateCheck([], ["the candidates array is empty; propose at least one candidate"], 0)
    valid, problems = [], []
    for i, item in enumerate(items):
        params = item.get("params", item) if isinstance(item, Mapping) else item
        rationale = item.get("rationale") if isinstance(item, Mapping) and "params" in item else None
        found = space.problems(params)
        if found:
            problems += [f"candidate {i + 1}: {p}" for p in found]
        else:
            valid.append((space.validate(params), str(rationale)[:300] if rationale else None))
    return CandidateCheck(valid, problems, len(items))


def _call_line(purpose: str, completion: Completion, checked: CandidateCheck | None) -> str:
    """One model call for ``-v``: ``model call propose: 3 of 4 candidates valid (812+143 tokens, 3.2 s)``,
    or why nothing in it could be used."""
    if checked is None:
        outcome = f"the reply is not valid JSON ({completion.parse_error})"
    else:
        outcome = f"{len(checked.valid)} of {checked.total} candidates valid"
        if not checked.valid and checked.problems:
            outcome += f": {'; '.join(checked.problems[:3])}"
    usage = f"{completion.prompt_tokens}+{completion.completion_tokens} tokens, {completion.latency_s:.1f} s"
    return f"model call {purpose}: {outcome} ({usage})"


class _Refused:
    """The budget refused a call: no request was made, and the model is not to blame."""


_REFUSED = _Refused()


@dataclass(frozen=True)
class _Reply:
    """A model reply: its text, its candidates read against the space (None when it was not JSON), why it
    did not parse, and the stored call."""

    text: str
    check: CandidateCheck | None
    parse_error: str | None
    call_id: int | None


class LLMProposer:
    """Asks the model, through ``gateway``, for candidates; ``partner`` fills what the model does not deliver.

    Args:
        gateway: the study's model gateway (budget, pricing, record).
        partner: the proposer that fills shortfalls (BO in practice).
        batch_size: candidates asked per call.
        history_tokens: budget for the history part of the prompt.
        temperature: the sampling temperature of proposal calls.
        metric: the target's name, for the prompt.
        notes: the user's steering notes (from chat).
    """

    name = "llm"

    def __init__(
        self,
        gateway: ModelGateway,
        partner: Proposer,
        batch_size: int = 4,
        history_tokens: int = 1500,
        temperature: float = 0.7,
        metric: str | None = None,
        notes: Sequence[str] = (),
    ) -> None:
        self.gateway = gateway
        self.partner = partner
        self.batch_size = batch_size
        self.history_tokens = history_tokens
        self.temperature = temperature
        self.metric = metric
        self.notes = list(notes)
        self._buffer: list[Proposal] = []
        self._failures_in_a_row = 0
        self._rest = 0  # proposals to make without the model after failures

    def propose(self, view: StudyView, n: int, pending: Sequence[Mapping[str, ParamValue]]) -> list[Proposal]:
        seen = SeenPoints.of(view, pending)
        chosen = self._take(n, seen)
        if len(chosen) < n and self._rest > 0:
            self._rest -= 1
        elif len(chosen) < n:
            self._buffer += self._ask_model(view, max(n - len(chosen), self.batch_size), [*pending])
            chosen += self._take(n - len(chosen), seen)
        if len(chosen) < n:
            filled = self.partner.propose(view, n - len(chosen), [*pending, *(p.params for p in chosen)])
            chosen += filled
        return chosen

    def _take(self, n: int, seen: SeenPoints) -> list[Proposal]:
        taken: list[Proposal] = []
        kept: list[Proposal] = []
        for proposal in self._buffer:
            if len(taken) < n and seen.add(proposal.params):
                taken.append(proposal)
            elif seen.is_new(proposal.params):
                kept.append(proposal)
        self._buffer = kept
        return taken

    # The model ------------------------------------------------------------------------------------------
    def _ask_model(self, view: StudyView, k: int, pending: list[Mapping[str, ParamValue]]) -> list[Proposal]:
        messages = self.messages(view, k, pending)
        schema = batch_schema(view.space, k)
        reply = self._call("propose", messages, schema, view.space)
        if isinstance(reply, _Refused):
            return []
        if reply is None:
            return self._failed()
        proposals = self._proposals(reply)
        problems = (
            [f"the reply is not valid JSON: {reply.parse_error}"] if reply.check is None else reply.check.problems
        )
        if problems:
            repair = [
                *messages,
                {"role": "assistant", "content": reply.text[:4000]},
                {"role": "user", "content": render("repair.j2", problems=problems[:20])},
            ]
            fixed = self._call("repair", repair, schema, view.space)
            if isinstance(fixed, _Reply):
                proposals += self._proposals(fixed)
            if isinstance(fixed, _Refused) and not proposals:
                return []  # the budget, not the model, ended this ask
        if not proposals:
            return self._failed()
        self._failures_in_a_row = 0
        return proposals

    def _proposals(self, reply: _Reply) -> list[Proposal]:
        if reply.check is None:
            return []
        return [Proposal(params, self.name, rationale, reply.call_id) for params, rationale in reply.check.valid]

    def _call(
        self, purpose: str, messages: list[Message], schema: dict[str, Any], space: Space
    ) -> _Reply | _Refused | None:
        """One model call, its candidates read against ``space``; None when it failed; :data:`_REFUSED` when
        the budget refused it (no request was made)."""
        checked: CandidateCheck | None = None

        def check(completion: Completion) -> str | None:
            # Run by the gateway before it stores the call, so that a reply with nothing usable is on record
            # as a failure; the reading is kept for the proposals.
            nonlocal checked
            checked = read_candidates(space, completion.parsed)
            if checked.valid:
                return None
            return f"no valid candidate in the reply: {'; '.join(checked.problems[:5])}"

        try:
            with announce_if_slow(f"waiting for {self.gateway.model} to {purpose}", logger=log):
                completion = self.gateway.complete(
                    messages, schema, purpose=purpose, temperature=self.temperature, check=check
                )
        except ModelBudgetExhausted as exc:
            log.debug("no model call: %s; the partner proposes", exc)
            return _REFUSED
        except LLMError as exc:
            log.warning("the model failed (%s); the partner proposer fills in", exc)
            return None
        log.debug("%s", _call_line(purpose, completion, checked))
        return _Reply(completion.text, checked, completion.parse_error, completion.call_id)

    def _failed(self) -> list[Proposal]:
        self._failures_in_a_row += 1
        self._rest = min(2 ** (self._failures_in_a_row - 1), 32)
        return []

    def messages(self, view: StudyView, k: int, pending: Sequence[Mapping[str, ParamValue]]) -> list[Message]:
        """The prompt: the space, the history (best last), pending points, the user's notes."""
        best = view.incumbent()
        space_lines = [f"{name}: {param.describe()}" for name, param in view.space.items()]
        return [
            {
                "role": "system",
                "content": render("propose_system.j2", direction=view.direction, names=list(view.space)),
            },
            {
                "role": "user",
                "content": render(
                    "propose_user.j2",
                    context=view.context,
                    direction=view.direction,
                    metric=self.metric,
                    space_lines=space_lines,
                    history=render_history(view, self.history_tokens),
                    pending=[format_params(p, 120) for p in pending],
                    notes=[*self.notes, *view.notes],
                    k=k,
                    best=None if best is None else f"{best.value:.6g}",
                ),
            },
        ]

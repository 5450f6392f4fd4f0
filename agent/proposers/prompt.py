"""The ``prompt`` proposer: the model rewrites a pipeline's prompts from what the dev set says about them.

Two ways of asking, from the prompt-optimization literature, both on the study's own records:

* **OPRO's meta-prompt**: past candidates with their scores, worst first so the best sits last, a few dev
  examples, and "write a different one that scores higher". The model sees the whole trajectory.
* **GEPA's reflection**: the incumbent in full, with the dev examples it got wrong — the task model's answer
  beside the expected one, read from the incumbent's stored per-example results — and "find why it fails
  on these and fix it". The model sees *where* the prompt fails, not only how much.

Each proposal of the model is a whole pipeline: every Text parameter and the numeric ones beside them. In
a mixed space, a share of the proposals (``numeric``) goes to BO instead, which tunes the numeric part
around the incumbent's texts: it is fit only on the trials that used those texts, since a temperature good
for one prompt says little about another. When the model fails or repeats a known candidate
``attempts`` times, BO proposes too.

The first proposal is the pipeline as written (the space's default texts), so every later score has a
baseline. With ``feedback = false`` the model is shown neither scores nor failures, only the task, the
examples and the candidates written so far: the baseline the evaluation compares feedback with.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pydantic import Field

from agent.display import cut, number
from agent.evolution.edits import unified_diff
from agent.llm.client import Completion, Message
from agent.proposers.base import SeenPoints, StudyView
from agent.proposers.bo import BOOptions
from agent.proposers.llm import batch_schema, read_candidates
from agent.proposers.partnered import PartneredProposer
from agent.proposers.registry import PROPOSERS, ProposerContext
from agent.space import ParamValue, Space
from agent.trial import Proposal, Trial, TrialState
from prompts import render
from tools.prompt_eval import read_results

log = logging.getLogger(__name__)

#: Characters of an example's input, answer or expected value shown to the model.
_SHOWN_CHARS = 300


class PromptOptions(BOOptions):
    """Options of ``prompt``; ``num_restarts``/``raw_samples`` tune the BO partner of the numeric parameters."""

    history: int = Field(default=12, ge=1, le=50, description="past candidates shown with their scores, best last")
    examples: int = Field(default=3, ge=0, le=20, description="dev examples shown (input and expected answer)")
    failures: int = Field(default=4, ge=1, le=20, description="the incumbent's missed examples shown to reflect on")
    reflect: float = Field(default=0.5, ge=0.0, le=1.0, description="share of model proposals that are reflections")
    numeric: float = Field(
        default=0.3, ge=0.0, le=1.0, description="share of proposals BO makes on the numeric parameters (mixed spaces)"
    )
    feedback: bool = Field(default=True, description="show scores and failures (false: the no-feedback baseline)")
    attempts: int = Field(default=3, ge=1, le=10, description="model calls per proposal before the partner")
    temperature: float = Field(default=0.9, ge=0.0, le=2.0, description="the model's sampling temperature")
    max_tokens: int = Field(default=1024, ge=64, description="the longest reply")


@dataclass(frozen=True)
class _Candidate:
    """A past candidate as the prompt shows it."""

    params: str
    score: str | None


@dataclass(frozen=True)
class _Miss:
    """A dev example the incumbent got wrong."""

    input: str
    output: str
    expected: str


class PromptProposer(PartneredProposer[PromptOptions]):
    """Proposes pipelines whose texts the model writes; see the module docstring."""

    name = "prompt"
    #: Not prepared ahead while a trial runs (one worker): a reflection must see the last candidate's misses,
    #: and the evaluation keeps the task model busy anyway.
    prefetch = False

    def propose(self, view: StudyView, n: int, pending: Sequence[Mapping[str, ParamValue]]) -> list[Proposal]:
        if not view.space.text_items():  # refused when a study is created; a bare call gets the partner's
            return self.partner.propose(view, n, pending)
        # One stream per proposal of the study: a replayed run makes the same choices in the same order.
        rng = random.Random(f"{self.seed}:{len(view.trials)}:{len(pending)}")
        chosen: list[Proposal] = []
        for _ in range(n):
            chosen.append(self._one(view, rng, [*pending, *(p.params for p in chosen)]))
        return chosen

    def _one(self, view: StudyView, rng: random.Random, pending: Sequence[Mapping[str, ParamValue]]) -> Proposal:
        defaults = view.space.defaults()
        tried = [t.params for t in view.trials if not t.interrupted]
        if not any(_same_texts(params, defaults) for params in [*tried, *pending]):
            numeric = self.partner.propose(view, 1, pending)[0]
            return Proposal({**numeric.params, **defaults}, self.name, "the pipeline as written")
        best = view.incumbent()
        if view.space.numeric_items() and rng.random() < self.options.numeric:
            return self._numeric(view, best, pending, "BO tunes the numbers around the best texts")
        misses = self._misses(view, best, rng) if self.options.feedback else []
        reflect = bool(misses) and rng.random() < self.options.reflect
        seen = SeenPoints.of(view, pending)
        for attempt in range(self.options.attempts):
            # A model that repeated itself is asked again a little hotter: the same prompt at the same
            # temperature tends to get the same answer.
            temperature = min(2.0, self.options.temperature + 0.3 * attempt)
            proposal = self._ask(view, best, misses if reflect else [], seen, rng, temperature)
            if proposal is not None:
                return proposal
        return self._numeric(view, best, pending, "the model gave no new candidate; BO proposes with the best texts")

    def _numeric(
        self, view: StudyView, best: Trial | None, pending: Sequence[Mapping[str, ParamValue]], why: str
    ) -> Proposal:
        """BO on the numeric parameters, fit on the trials that used the incumbent's texts."""
        texts = view.text_values()
        same = [t for t in view.trials if _same_texts(t.params, texts)]
        proposal = self.partner.propose(replace(view, trials=same, known_keys=None), 1, pending)[0]
        parents = () if best is None else (best.number,)
        return Proposal({**proposal.params, **texts}, proposal.proposer, why, parents=parents)

    # The model ------------------------------------------------------------------------------------------
    def _ask(
        self,
        view: StudyView,
        best: Trial | None,
        misses: list[_Miss],
        seen: SeenPoints,
        rng: random.Random,
        temperature: float,
    ) -> Proposal | None:
        """One model call; the proposal, or None when the model failed, repeated itself or was refused."""
        messages = self.messages(view, best, misses, rng)
        chosen: tuple[dict[str, ParamValue], str | None] | None = None

        def check(completion: Completion) -> str | None:
            # Run by the gateway before it stores the call: a reply with nothing new is on record as failed.
            nonlocal chosen
            checked = read_candidates(view.space, completion.parsed)
            if not checked.valid:
                return f"no valid candidate in the reply: {'; '.join(checked.problems[:5])}"
            fresh = [(params, why) for params, why in checked.valid if seen.is_new(params)]
            if not fresh:
                return "the reply repeats a candidate already tried"
            chosen = fresh[0]
            return None

        completion = self.ask_model(
            messages,
            batch_schema(view.space, 1),
            purpose="propose",
            to="write a prompt",
            temperature=temperature,
            max_tokens=self.options.max_tokens,
            check=check,
        )
        if completion is None:
            return None
        if chosen is None:
            log.debug("model call propose: nothing new in the reply (%s)", completion.parse_error or "repeated")
            return None
        params, rationale = chosen
        seen.add(params)
        parents = () if best is None else (best.number,)
        how = "reflection on the best candidate's misses" if misses else "from the scored history"
        return Proposal(
            params,
            self.name,
            f"{rationale or 'rewritten'} ({how})" if self.options.feedback else rationale,
            completion.call_id,
            parents,
            _diffs(view.space, best, params),
        )

    def messages(self, view: StudyView, best: Trial | None, misses: list[_Miss], rng: random.Random) -> list[Message]:
        """The meta-prompt: a reflection on ``misses`` when there are some, else OPRO's scored history."""
        feedback = self.options.feedback
        space = view.space
        return [
            {
                "role": "system",
                "content": render("prompt_system.j2", names=list(space), metric=self.metric, feedback=feedback),
            },
            {
                "role": "user",
                "content": render(
                    "prompt_user.j2",
                    context=view.context,
                    metric=self.metric or "the score",
                    parameters=[f"{name}: {param.describe()}" for name, param in space.items()],
                    examples=self._examples(view, best, rng),
                    history=self._history(view) if not misses else [],
                    best=None if best is None or not feedback else _params_text(space, best.params),
                    best_score=None if best is None or not feedback else number(best.value),
                    misses=misses,
                    feedback=feedback,
                    notes=view.notes,
                ),
            },
        ]

    def _history(self, view: StudyView) -> list[_Candidate]:
        """Past candidates, worst first and best last (OPRO), with their scores when feedback is on; pruned
        ones with their minibatch score."""
        scored: list[tuple[float, Trial]] = []
        for trial in view.trials:
            if trial.state is TrialState.COMPLETE and trial.value is not None:
                scored.append((trial.value, trial))
            elif trial.state is TrialState.PRUNED and "minibatch_score" in trial.metrics:
                scored.append((trial.metrics["minibatch_score"], trial))
        if not self.options.feedback:
            scored.sort(key=lambda pair: pair[1].number)
            return [_Candidate(_params_text(view.space, t.params), None) for _, t in scored[-self.options.history :]]
        sign = 1.0 if view.direction == "maximize" else -1.0
        scored.sort(key=lambda pair: sign * pair[0])
        return [
            _Candidate(
                _params_text(view.space, t.params),
                number(value) + (" on a minibatch" if t.state is TrialState.PRUNED else ""),
            )
            for value, t in scored[-self.options.history :]
        ]

    def _examples(self, view: StudyView, best: Trial | None, rng: random.Random) -> list[dict[str, str]]:
        """A few dev examples (input and expected answer), drawn from the per-example results on record."""
        if not self.options.examples:
            return []
        results = _results(view, best) or next((r for t in reversed(view.trials) if (r := _results(view, t))), [])
        drawn = rng.sample(results, min(self.options.examples, len(results)))
        return [{"input": _shown(r.get("input")), "expected": _shown(_first(r.get("expected")))} for r in drawn]

    def _misses(self, view: StudyView, best: Trial | None, rng: random.Random) -> list[_Miss]:
        """Some of the incumbent's dev examples scored below 1, drawn afresh each time: what a reflection is about."""
        missed = [r for r in _results(view, best) if float(r.get("score", 1.0)) < 1.0]
        drawn = sorted(rng.sample(range(len(missed)), min(self.options.failures, len(missed))))
        return [
            _Miss(
                _shown(missed[i].get("input")),
                _shown(missed[i].get("output")),
                _shown(_first(missed[i].get("expected"))),
            )
            for i in drawn
        ]


def _results(view: StudyView, trial: Trial | None) -> list[dict[str, Any]]:
    """A trial's per-example results (its ``examples`` artifact), or [] when it has none."""
    if trial is None or view.read_artifact is None or "examples" not in trial.artifacts:
        return []
    try:
        return read_results(view.read_artifact(trial.artifacts["examples"]))
    except (ValueError, KeyError, RuntimeError):
        return []


def _same_texts(params: Mapping[str, ParamValue], texts: Mapping[str, str]) -> bool:
    return all(params.get(name) == text for name, text in texts.items())


def _params_text(space: Space, params: Mapping[str, ParamValue]) -> str:
    """A candidate as the model reads it: texts in full (quoted as JSON strings), numbers at 6 digits."""
    texts = dict(space.text_items())

    def shown(name: str) -> str:
        value = params.get(name)
        return (
            number(value) if isinstance(value, float) and name not in texts else json.dumps(value, ensure_ascii=False)
        )

    return "\n".join(f"{name}: {shown(name)}" for name in space)


def _diffs(space: Space, best: Trial | None, params: Mapping[str, ParamValue]) -> dict[str, str]:
    """The change of each text from the parent's, stored with the trial (``tunesmith show`` prints it)."""
    if best is None:
        return {}
    diffs = [
        unified_diff(str(best.params.get(name, "")), str(params[name]), name)
        for name, _ in space.text_items()
        if params.get(name) != best.params.get(name)
    ]
    return {"diff": "".join(diffs)} if diffs else {}


def _first(expected: Any) -> Any:
    return expected[0] if isinstance(expected, list) and expected else expected


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return cut(text, _SHOWN_CHARS)


def _text_problem(space: Space) -> str | None:
    if space.text_items():
        return None
    return 'the "prompt" proposer writes Text parameters; the space has none (add e.g. instructions = Text("..."))'


@PROPOSERS.register("prompt", options=PromptOptions, needs_model=True, uses_model=True, check_space=_text_problem)
def _prompt(options: PromptOptions, context: ProposerContext) -> PromptProposer:
    return PromptProposer.from_context(options, context)

"""The ``evolve`` proposer: the model edits programs chosen from an evolutionary archive.

What FunSearch, AlphaEvolve and OpenEvolve showed works, on the study's own records:

* the archive (:mod:`agent.evolution.archive`) is rebuilt from the trials and their lineage at each proposal,
  so it survives ``kill -9`` and ``resume`` with nothing stored of its own;
* a parent is drawn from it (mostly the good programs, sometimes any cell of the grid), and the prompt shows it
  in full, with a few good programs from other cells and the latest attempts with their scores and feedback
  (a stderr tail, failing test names, timings);
* the model answers with SEARCH/REPLACE blocks (:mod:`agent.evolution.edits`; a whole rewrite for short
  programs). An edit that does not apply, or gives a program already tried (compared after normalizing
  whitespace and comments), costs no evaluation: the call is recorded as failed with the reason, the reason is
  shown to the model on its next attempt, and the model tries again (``attempts`` times per proposal);
* each candidate's program and its diff against the parent are stored with the trial, and the parent is its
  lineage.

When no attempt gives a new program, the partner proposes (BO on the numeric parameters, the incumbent's code):
the study goes on, it only spends an evaluation on a known program. The first proposal of a study is the
program as the file holds it, so every later score has a baseline.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from agent.display import cut, failure_cause, number
from agent.errors import ConfigError
from agent.evolution.archive import DEFAULT_FEATURES, Archive, Feature
from agent.evolution.edits import normalize, read_reply, unified_diff
from agent.llm.client import Completion
from agent.proposers.base import StudyView
from agent.proposers.bo import BOOptions
from agent.proposers.partnered import PartneredProposer
from agent.proposers.registry import PROPOSERS, ProposerContext
from agent.space import Code, ParamValue, Space
from agent.trial import Proposal, Trial, TrialState
from prompts import render

log = logging.getLogger(__name__)

#: Feedback of a recent attempt shown to the model: its last lines hold the error or the failing tests.
_FEEDBACK_CHARS = 600
#: Reasons of rejected edits kept for the next prompt.
_REJECTED_SHOWN = 3


class EvolveOptions(BOOptions):
    """Options of ``evolve``; ``num_restarts``/``raw_samples`` tune the BO partner of the numeric parameters."""

    features: list[str] = Field(
        default_factory=lambda: [feature.name for feature in DEFAULT_FEATURES],
        description="axes of the MAP-Elites grid: code_length, a metric the objective reports, or seconds (the "
        "trial's wall time: it changes with the machine's load, so a recorded run no longer replays exactly)",
    )
    bins: int = Field(default=6, ge=1, le=64, description="cells per feature")
    islands: int = Field(default=1, ge=1, le=16, description="populations evolving apart (by lineage)")
    inspirations: int = Field(default=2, ge=0, le=8, description="other good programs shown for ideas")
    recent: int = Field(default=4, ge=0, le=16, description="latest attempts shown with their outcome")
    attempts: int = Field(default=3, ge=1, le=10, description="model calls per proposal before the partner")
    rewrite_lines: int = Field(default=40, ge=0, description="programs this short may be rewritten whole")
    temperature: float = Field(default=0.8, ge=0.0, le=2.0, description="the model's sampling temperature")
    max_tokens: int = Field(default=2048, ge=64, description="the longest reply")


@dataclass(frozen=True)
class _Shown:
    """A program as the prompt shows it."""

    label: str
    code: str


class EvolveProposer(PartneredProposer[EvolveOptions]):
    """Proposes edited programs for the space's one Code parameter; see the module docstring."""

    name = "evolve"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rejected: list[str] = []  # why the last edits were not run, shown to the model next time

    def propose(self, view: StudyView, n: int, pending: Sequence[Mapping[str, ParamValue]]) -> list[Proposal]:
        name, param = _code_parameter(view)
        # Programs evaluated or being evaluated; an interrupted trial's program never ran, and may be proposed again.
        tried = [t.params for t in view.trials if not t.interrupted]
        seen = {normalize(str(params[name]), param.language) for params in [*tried, *pending]}
        archive = Archive.from_trials(
            view.trials,
            code_param=name,
            direction=view.direction,
            features=[Feature(feature, bins=self.options.bins) for feature in self.options.features],
            islands=self.options.islands,
        )
        # One stream per proposal of the study: a replayed run draws the same parents in the same order.
        rng = random.Random(f"{self.seed}:{len(view.trials)}:{len(pending)}")
        chosen: list[Proposal] = []
        for _ in range(n):
            proposal = self._one(view, name, param, archive, rng, seen, [*pending, *(p.params for p in chosen)])
            seen.add(normalize(str(proposal.params[name]), param.language))
            chosen.append(proposal)
        return chosen

    def _one(
        self,
        view: StudyView,
        name: str,
        param: Code,
        archive: Archive,
        rng: random.Random,
        seen: set[str],
        pending: Sequence[Mapping[str, ParamValue]],
    ) -> Proposal:
        if normalize(param.default, param.language) not in seen:
            numeric = self.partner.propose(view, 1, pending)[0]
            return Proposal({**numeric.params, name: param.default}, self.name, "the program as its file holds it")
        parent = archive.select_parent(rng)
        parents: tuple[int, ...] = ()
        if parent is None:  # only failures so far: edit the starting program, whose failure the model is shown
            parent_code, label = param.default, "the starting program"
            parent_params = self.partner.propose(view, 1, pending)[0].params
        else:
            parent_code, parent_params = str(parent.params[name]), parent.params
            label, parents = _label(parent, self.metric), (parent.number,)
        shown = [
            _Shown(_label(t, self.metric), str(t.params[name]))
            for t in (archive.inspirations(parent, rng, self.options.inspirations) if parent is not None else [])
        ]
        recent = archive.recent(self.options.recent)
        for _ in range(self.options.attempts):
            edited = self._ask(view, param, _Shown(label, parent_code), shown, recent, seen)
            if edited is None:
                break  # the model failed or the budget refused: no use asking again now
            code, rationale, call_id = edited
            if code is not None:
                artifacts = {"program": code, "diff": unified_diff(parent_code, code, param.file or name)}
                params = {**parent_params, name: code}
                return Proposal(params, self.name, rationale, call_id, parents, artifacts)
        fallback = self.partner.propose(view, 1, pending)[0]
        rationale = "the model gave no new program that applies; the partner proposes, with the best program"
        return Proposal(fallback.params, fallback.proposer, rationale)

    def _ask(
        self,
        view: StudyView,
        param: Code,
        parent: _Shown,
        inspirations: Sequence[_Shown],
        recent: Sequence[Trial],
        seen: set[str],
    ) -> tuple[str | None, str | None, int | None] | None:
        """One model call: (the new program or None when the edit was rejected, the rationale, the call's id);
        None when the model failed or the budget refused the call."""
        allow_rewrite = parent.code.count("\n") + 1 <= self.options.rewrite_lines
        best = view.incumbent()
        messages = [
            {
                "role": "system",
                "content": render(
                    "evolve_system.j2",
                    direction=view.direction,
                    metric=self.metric,
                    allow_rewrite=allow_rewrite,
                    language=param.language,
                ),
            },
            {
                "role": "user",
                "content": render(
                    "evolve_user.j2",
                    context=view.context,
                    direction=view.direction,
                    metric=self.metric,
                    language=param.language,
                    parent=parent,
                    inspirations=inspirations,
                    recent=[_attempt(t, self.metric) for t in recent],
                    rejected=self._rejected[-_REJECTED_SHOWN:],
                    best=None if best is None else number(best.value),
                ),
            },
        ]
        program: str | None = None
        rejected = "the reply was not read"

        def check(completion: Completion) -> str | None:
            # Run by the gateway before it stores the call: a rejected edit is on record as a failed call.
            nonlocal program, rejected
            result = read_reply(parent.code, completion.text, allow_rewrite=allow_rewrite, language=param.language)
            if result.text is None:
                rejected = "the edit did not apply: " + "; ".join(result.problems)
            elif normalize(result.text, param.language) in seen:
                rejected = "the edit gives a program already tried (the same after whitespace and comments)"
            else:
                program = result.text
                return None
            return rejected

        completion = self.ask_model(
            messages,
            None,
            purpose="evolve",
            to="edit the program",
            temperature=self.options.temperature,
            max_tokens=self.options.max_tokens,
            check=check,
        )
        if completion is None:
            return None
        tokens = f"{completion.prompt_tokens}+{completion.completion_tokens} tokens, {completion.latency_s:.1f} s"
        if program is None:
            self._rejected.append(cut(rejected, 400))
            log.debug("model call evolve: rejected: %s (%s)", rejected, tokens)
        else:
            log.debug("model call evolve: the edit applies (%s)", tokens)
        return program, _rationale(completion.text), completion.call_id


def _code_parameter(view: StudyView) -> tuple[str, Code]:
    problem = _one_code_parameter(view.space)
    if problem is not None:
        raise ConfigError(problem)
    return next((name, param) for name, param in view.space.items() if isinstance(param, Code))


def _one_code_parameter(space: Space) -> str | None:
    code = [name for name, param in space.items() if isinstance(param, Code)]
    if len(code) == 1:
        return None
    return f'the "evolve" proposer evolves one Code parameter; the space has {", ".join(code) or "none"}'


def _label(trial: Trial, metric: str | None) -> str:
    """``trial 7, seconds 0.42`` (with its other metrics) for a prompt."""
    others = ", ".join(f"{k} {number(v)}" for k, v in trial.metrics.items() if k != metric)
    return f"trial {trial.number}, {metric or 'value'} {number(trial.value)}" + (f" ({others})" if others else "")


def _attempt(trial: Trial, metric: str | None) -> str:
    """One recent attempt for the prompt: its outcome, its idea, and the end of what it printed when it failed."""
    idea = f" — idea: {trial.rationale}" if trial.rationale else ""
    if trial.state is TrialState.COMPLETE:
        return f"{_label(trial, metric)}{idea}"
    shown = f"trial {trial.number} failed: {failure_cause(trial) or trial.error}{idea}"
    if trial.feedback:
        shown += "\n  output ends with:\n  " + cut(trial.feedback[-_FEEDBACK_CHARS:], _FEEDBACK_CHARS).replace(
            "\n", "\n  "
        )
    return shown


def _rationale(reply: str) -> str | None:
    """The sentence before the first block or fence: what the model says it changes."""
    head = reply.split("<<<<<<<", 1)[0].split("```", 1)[0].strip()
    return cut(" ".join(head.split()), 300) or None


@PROPOSERS.register("evolve", options=EvolveOptions, needs_model=True, uses_model=True, check_space=_one_code_parameter)
def _evolve(options: EvolveOptions, context: ProposerContext) -> EvolveProposer:
    return EvolveProposer.from_context(options, context)

"""The proposer contract: what every proposer (random, bo, llm, auto) is given and must return.

A proposer sees a read-only :class:`StudyView` and the candidates still being evaluated (``pending``),
and returns ``n`` valid proposals that differ from each other, from past trials and from pending points
whenever the space has room for that. The study validates them again anyway (VALIDATE stage).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol, runtime_checkable

from agent.space import ParamValue, Space
from agent.trial import Proposal, Trial, TrialState

Direction = Literal["minimize", "maximize"]


@dataclass(frozen=True)
class StudyView:
    """What a proposer may know about a study.

    Attributes:
        space: the search space.
        direction: "minimize" or "maximize".
        trials: finished trials, oldest first.
        seed: makes proposals reproducible when set.
        context: the user's description of the task, for the model.
        known_keys: identities (:meth:`Space.key`) of every point tried or running, when the study keeps
            them; spares proposers recomputing them from the whole history at every proposal.
        read_artifact: the content of a stored artifact by digest (``trial.artifacts[name]``), for proposers
            that learn from what an evaluation kept (each dev example's output); None when not stored.
        notes: the notes people left on the study (:meth:`agent.study.Study.note`), for model-driven proposers.
        pinned: parameters people pinned (:meth:`agent.study.Study.fix`) and their values; they are not in
            :attr:`space`, and every proposal gets them.
    """

    space: Space
    direction: Direction
    trials: Sequence[Trial]
    seed: int | None = None
    context: str | None = None
    known_keys: frozenset[tuple[object, ...]] | None = None
    read_artifact: Callable[[str], bytes] | None = None
    notes: tuple[str, ...] = ()
    pinned: Mapping[str, ParamValue] = field(default_factory=dict)

    @property
    def completed(self) -> list[Trial]:
        return [t for t in self.trials if t.state is TrialState.COMPLETE and t.value is not None]

    def inside_space(self) -> StudyView:
        """This view with only the trials whose point lies in :attr:`space`, at the :attr:`pinned` values.

        A steered (narrowed) space leaves older trials outside it; a surrogate model fitted on them would
        be dragged toward points it may no longer propose, and one fitted on trials at another value of a
        pinned parameter (a dimension it no longer sees) would read that parameter's effect as noise. They
        stay in :attr:`trials` for everyone else.
        """
        inside = [
            t
            for t in self.trials
            if all(name in t.params and param.problem(t.params[name]) is None for name, param in self.space.items())
            and all(t.params.get(name) == value for name, value in self.pinned.items())
        ]
        return self if len(inside) == len(self.trials) else replace(self, trials=inside)

    def incumbent(self) -> Trial | None:
        """The best complete trial so far."""
        completed = self.completed
        if not completed:
            return None
        pick = max if self.direction == "maximize" else min
        return pick(completed, key=lambda t: t.value if t.value is not None else 0.0)

    def improvements(self) -> dict[str, tuple[int, int]]:
        """Per proposer: (trials that beat the incumbent of their time, trials that did not), in finishing order.

        The one definition of "contributed" that ``status`` reports and the ``auto`` bandit rewards.
        """
        counts: dict[str, list[int]] = {}
        best: float | None = None
        sign = 1.0 if self.direction == "maximize" else -1.0
        for trial in sorted(self.trials, key=lambda t: t.finished_at or t.started_at):
            improved = False
            if trial.state is TrialState.COMPLETE and trial.value is not None:
                improved = best is None or sign * trial.value > sign * best
                if improved:
                    best = trial.value
            counts.setdefault(trial.proposer, [0, 0])[0 if improved else 1] += 1
        return {name: (wins, misses) for name, (wins, misses) in counts.items()}

    def text_values(self) -> dict[str, str]:
        """Text and Code values numeric proposers carry along: the incumbent's, else the defaults."""
        defaults = self.space.defaults()
        if not defaults:  # no Text or Code parameter: nothing to carry, and no need to find the incumbent
            return {}
        best = self.incumbent()
        if best is None:
            return defaults
        return {name: str(best.params.get(name, default)) for name, default in defaults.items()}


@runtime_checkable
class Proposer(Protocol):
    """Makes candidates. ``name`` is recorded on every trial it proposes."""

    name: str

    def propose(self, view: StudyView, n: int, pending: Sequence[Mapping[str, ParamValue]]) -> list[Proposal]:
        """Return ``n`` valid proposals, distinct from each other, the past and ``pending`` where possible."""
        ...


class SeenPoints:
    """Identity of the candidates already tried, pending or chosen, for dropping duplicates.

    Built on the study's own set of known identities when the view carries one, so that a proposal
    costs nothing per past trial.
    """

    def __init__(
        self,
        space: Space,
        candidates: Iterable[Mapping[str, ParamValue]] = (),
        known: frozenset[tuple[object, ...]] = frozenset(),
    ) -> None:
        self._space = space
        self._known = known
        self._keys = {space.key(c) for c in candidates}

    def _seen(self, key: tuple[object, ...]) -> bool:
        return key in self._keys or key in self._known

    def is_new(self, candidate: Mapping[str, ParamValue]) -> bool:
        return not self._seen(self._space.key(candidate))

    def add(self, candidate: Mapping[str, ParamValue]) -> bool:
        """Remember ``candidate``; False when it was already seen."""
        key = self._space.key(candidate)
        if self._seen(key):
            return False
        self._keys.add(key)
        return True

    @classmethod
    def of(cls, view: StudyView, pending: Sequence[Mapping[str, ParamValue]]) -> SeenPoints:
        if view.known_keys is None:
            return cls(view.space, [*(t.params for t in view.trials), *pending])
        return cls(view.space, pending, view.known_keys)

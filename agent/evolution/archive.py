"""The evolutionary archive: a MAP-Elites grid of programs, derived from a study's trials and their lineage.

The archive stores nothing of its own: it is rebuilt from the trials whenever it is needed, so it survives
``kill -9`` and ``resume``, and the same trials always give the same archive (the order they are passed in
does not matter). Draws take a caller's :class:`random.Random`, so one seed replays the same parents.

* **Grid.** Each :class:`Feature` cuts one measurable property of a program (its length, its run time, a
  metric) into bins; a cell holds its *elite*, the best complete trial that falls in it. Keeping the best of
  every cell, not only the best overall, keeps different kinds of programs alive as stepping stones.
* **Islands.** With ``islands > 1`` the trials split into populations that evolve apart, each with its own
  grid. A trial belongs to the island of its lineage's root (follow the first parent back); a root (no
  parents: the starting program, a model's fresh rewrite) is dealt round-robin by its number. Children land
  on their parent's island, so an island fills only once a root is dealt to it; until then its draws borrow
  from the whole archive.
* **Parents.** :meth:`Archive.select_parent` exploits with probability :data:`EXPLOIT` (an elite drawn with
  weight ``1 / rank``, best first) and explores otherwise (any elite of the island, uniformly: a random
  occupied cell). The ratios follow OpenEvolve's mostly-exploit default; rank weights, as in ShinkaEvolve,
  favour the best without letting it take every draw.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from agent.trial import Trial, TrialState

__all__ = ["DEFAULT_FEATURES", "EXPLOIT", "Archive", "Feature", "Pick"]

#: Share of parent draws that exploit (rank-weighted elites); the rest explore (uniform over elites).
EXPLOIT = 0.7

#: Built-in feature names; any other name is read from the trials' metrics.
CODE_LENGTH = "code_length"
SECONDS = "seconds"


@dataclass(frozen=True)
class Feature:
    """One axis of the MAP-Elites grid.

    Attributes:
        name: ``"code_length"`` (characters of the program, as stored: not normalized), ``"seconds"`` (the
            trial's duration) or the name of a metric the objective reports. A metric wins over the built-in
            of the same name: an objective reporting its own ``seconds`` means the time it measured. A
            duration depends on the machine's load as much as on the program, so with ``"seconds"`` the same
            trials measured again fall in other cells, and a replay of the run draws other parents.
        bins: cells along the axis.
        low, high: the range cut into bins; None takes it from the data (the least and greatest value among
            the archive's complete trials), so the grid stretches as programs spread out. Values outside the
            range fall in the first or last bin.
        log: cut the range evenly on a log scale (run times spanning orders of magnitude); values at or below
            zero fall in the first bin.
    """

    name: str
    bins: int = 8
    low: float | None = None
    high: float | None = None
    log: bool = False

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a Feature needs a name: 'code_length', 'seconds' or a metric the objective reports")
        if self.bins < 1:
            raise ValueError(f"Feature {self.name!r}: bins must be at least 1, not {self.bins}")
        if self.low is not None and self.high is not None and not self.low < self.high:
            raise ValueError(f"Feature {self.name!r}: low ({self.low}) must be below high ({self.high})")
        for bound in (self.low, self.high):
            if self.log and bound is not None and bound <= 0:
                raise ValueError(f"Feature {self.name!r}: a log-scaled range needs positive bounds, not {bound}")

    def measure(self, trial: Trial, code_param: str) -> float | None:
        """The trial's value along this axis, or None when it has none (or it is not finite)."""
        if self.name in trial.metrics:
            value: float | None = trial.metrics[self.name]
        elif self.name == CODE_LENGTH:
            code = trial.params.get(code_param)
            value = None if code is None else float(len(str(code)))
        elif self.name == SECONDS:
            value = trial.duration_s
        else:
            value = None
        return value if value is not None and math.isfinite(value) else None


#: Program length alone: the grid then depends only on what was evaluated, never on how busy the machine was,
#: so a recorded run replays exactly. Run time is an axis only when asked for (see :class:`Feature`).
DEFAULT_FEATURES: tuple[Feature, ...] = (Feature(CODE_LENGTH),)


@dataclass(frozen=True)
class _Axis:
    """A feature with its range settled (on the log scale for log features), mapping values to bins."""

    feature: Feature
    low: float
    high: float

    @classmethod
    def fit(cls, feature: Feature, values: Sequence[float]) -> _Axis:
        scaled = [_scale(feature, v) for v in values if not (feature.log and v <= 0)]
        low = _scale(feature, feature.low) if feature.low is not None else min(scaled, default=0.0)
        high = _scale(feature, feature.high) if feature.high is not None else max(scaled, default=0.0)
        return cls(feature, low, high)

    def index(self, value: float) -> int:
        if self.feature.log and value <= 0:
            return 0
        span = self.high - self.low
        position = (_scale(self.feature, value) - self.low) / span if span > 0 else 0.0
        return min(self.feature.bins - 1, max(0, math.floor(position * self.feature.bins)))


def _scale(feature: Feature, value: float) -> float:
    return math.log(value) if feature.log else value


@dataclass(frozen=True)
class Pick:
    """A parent drawn from the archive, and how: for the log and the proposal's rationale.

    Attributes:
        trial: the parent.
        how: ``"exploit"`` (rank-weighted among elites) or ``"explore"`` (any elite, uniformly).
        island: the island whose turn it was.
    """

    trial: Trial
    how: Literal["exploit", "explore"]
    island: int


class Archive:
    """MAP-Elites grid (per island) over a study's complete trials; see the module docstring.

    Build it with :meth:`from_trials`; a bare ``Archive(...)`` is the archive of a study with no trials yet.
    Its only changing state is whose turn it is among the islands (see :meth:`pick`).
    """

    def __init__(
        self,
        code_param: str,
        direction: Literal["minimize", "maximize"],
        features: Sequence[Feature] = DEFAULT_FEATURES,
        *,
        islands: int = 1,
    ) -> None:
        if direction not in ("minimize", "maximize"):
            raise ValueError(f"direction must be 'minimize' or 'maximize', not {direction!r}")
        if not features:
            raise ValueError("an archive needs at least one Feature to place programs in cells")
        names = [f.name for f in features]
        if len(set(names)) != len(names):
            raise ValueError(f"each feature may appear once; got {names}")
        if islands < 1:
            raise ValueError(f"islands must be at least 1, not {islands}")
        self.code_param = code_param
        self.direction = direction
        self.features = tuple(features)
        self.islands = islands
        self._sign = 1.0 if direction == "maximize" else -1.0
        self._axes = tuple(_Axis(f, 0.0, 0.0) for f in self.features)
        self._trials: tuple[Trial, ...] = ()
        self._island_of: dict[int, int] = {}
        self._elites: dict[tuple[int, tuple[int, ...]], Trial] = {}
        self._lacking: dict[str, int] = {}
        self._turn = 0

    @classmethod
    def from_trials(
        cls,
        trials: Sequence[Trial],
        *,
        code_param: str,
        direction: Literal["minimize", "maximize"],
        features: Sequence[Feature] = DEFAULT_FEATURES,
        islands: int = 1,
    ) -> Archive:
        """The archive of ``trials`` (any states: only complete ones with a value enter the grid)."""
        archive = cls(code_param, direction, features, islands=islands)
        archive._fill(trials)
        return archive

    def _fill(self, trials: Sequence[Trial]) -> None:
        self._trials = tuple(sorted(trials, key=lambda t: t.number))
        for trial in self._trials:
            self._island_of[trial.number] = self._lineage_island(trial)
        measured: list[tuple[Trial, tuple[float, ...]]] = []
        for trial in filter(self._is_scored, self._trials):
            point = self._point(trial)
            if point is not None:
                measured.append((trial, point))
                continue
            for feature in self.features:
                if feature.measure(trial, self.code_param) is None:
                    self._lacking[feature.name] = self._lacking.get(feature.name, 0) + 1
        self._axes = tuple(_Axis.fit(f, [point[i] for _, point in measured]) for i, f in enumerate(self.features))
        for trial, point in measured:  # by number: on a tie the earlier trial stays the elite
            key = (self._island_of[trial.number], self._cell(point))
            held = self._elites.get(key)
            if held is None or self._better(trial, held):
                self._elites[key] = trial
        # Island turns continue from the study's size, so successive archives do not all start at island 0.
        self._turn = len(self._trials)

    def _lineage_island(self, trial: Trial) -> int:
        """The island of the trial's root: its first parent's island, or round-robin by number for a root.

        A parent always has a smaller number (it ran first); a parent missing from the trials counts as the
        root. Trials are visited by number, so a known parent's island is already settled: O(1) per trial.
        """
        if not trial.parents or trial.parents[0] >= trial.number:
            return trial.number % self.islands
        parent = trial.parents[0]
        return self._island_of.get(parent, parent % self.islands)

    @staticmethod
    def _is_scored(trial: Trial) -> bool:
        return trial.state is TrialState.COMPLETE and trial.value is not None and math.isfinite(trial.value)

    def _score(self, trial: Trial) -> float:
        """Higher is better, whatever the direction."""
        return self._sign * (trial.value if trial.value is not None else 0.0)

    def _better(self, trial: Trial, other: Trial) -> bool:
        return self._score(trial) > self._score(other)

    def _ranked(self, trials: Sequence[Trial]) -> list[Trial]:
        """Best first; ties go to the earlier trial."""
        return sorted(trials, key=lambda t: (-self._score(t), t.number))

    def _point(self, trial: Trial) -> tuple[float, ...] | None:
        """The trial's value along every feature, or None when it lacks one."""
        point = tuple(f.measure(trial, self.code_param) for f in self.features)
        return None if None in point else tuple(v for v in point if v is not None)

    def _cell(self, values: Sequence[float]) -> tuple[int, ...]:
        return tuple(axis.index(v) for axis, v in zip(self._axes, values, strict=True))

    def cell_of(self, trial: Trial) -> tuple[int, ...] | None:
        """The grid cell the trial falls in, or None when it is not complete or lacks a feature."""
        point = self._point(trial) if self._is_scored(trial) else None
        return self._cell(point) if point is not None else None

    def island_of(self, trial: Trial) -> int:
        """The island of the trial's lineage (the trial need not be in the archive)."""
        return self._island_of.get(trial.number, self._lineage_island(trial))

    def elites(self, island: int | None = None) -> list[Trial]:
        """The best trial of each occupied cell (of one island, or all), best first."""
        return self._ranked([t for (i, _), t in self._elites.items() if island is None or i == island])

    def best(self, k: int = 1) -> list[Trial]:
        """The ``k`` best complete trials, best first, whether or not they have every feature."""
        return self._ranked([t for t in self._trials if self._is_scored(t)])[:k]

    def recent(self, k: int = 4) -> list[Trial]:
        """The ``k`` latest finished attempts, complete or failed, oldest first: what was tried last and how it
        went. Interrupted trials are left out: they produced nothing about their program."""
        if k <= 0:
            return []
        finished = [t for t in self._trials if t.state.is_finished and not t.interrupted]
        return sorted(finished, key=lambda t: (t.finished_at or t.started_at, t.number))[-k:]

    def pick(self, rng: random.Random, island: int | None = None) -> Pick | None:
        """Draw a parent: see :class:`Pick`. None when no complete trial has every feature.

        ``island`` None takes the islands in turn: call ``i`` on an archive of ``n`` trials draws from island
        ``(n + i) % islands``. An island with no elite yet draws from the whole archive.
        """
        if island is None:
            island, self._turn = self._turn % self.islands, self._turn + 1
        elif not 0 <= island < self.islands:
            raise ValueError(f"island must be in 0..{self.islands - 1}, not {island}")
        pool = self.elites(island) or self.elites()
        if not pool:
            return None
        if rng.random() < EXPLOIT:
            weights = [1.0 / rank for rank in range(1, len(pool) + 1)]
            return Pick(rng.choices(pool, weights=weights)[0], "exploit", island)
        return Pick(rng.choice(pool), "explore", island)

    def select_parent(self, rng: random.Random, island: int | None = None) -> Trial | None:
        """The trial to edit next (see :meth:`pick`), or None when no complete trial has every feature."""
        drawn = self.pick(rng, island)
        return drawn.trial if drawn is not None else None

    def inspirations(self, parent: Trial, rng: random.Random, k: int = 3) -> list[Trial]:
        """Up to ``k`` good, different programs to show beside ``parent``, best first.

        Drawn from the elites of the parent's island in cells other than the parent's: the best of them (the
        strongest idea), then the rest uniformly (different ideas).
        """
        if k <= 0:
            return []
        cell = self.cell_of(parent)
        others = [
            t for t in self.elites(self.island_of(parent)) if t.number != parent.number and self.cell_of(t) != cell
        ]
        if len(others) <= k:
            return others
        return self._ranked([others[0], *rng.sample(others[1:], k - 1)])

    def describe(self) -> str:
        """One paragraph for logs and ``status``: cells occupied, the best per island, trials left out."""
        axes = " x ".join(f"{f.name} ({f.bins})" for f in self.features)
        cells = math.prod(f.bins for f in self.features) * self.islands
        text = f"Archive: {len(self._elites)} of {cells} cells occupied ({axes}"
        text += f", {self.islands} islands)." if self.islands > 1 else ")."
        bests = []
        for island in range(self.islands):
            top = self.elites(island)[:1]
            label = f"island {island}: " if self.islands > 1 else ""
            bests.append(f"{label}#{top[0].number} = {top[0].value:.6g}" if top else f"{label}empty")
        text += " Best: " + "; ".join(bests) + "."
        for name, count in sorted(self._lacking.items()):
            text += f" {count} complete trial(s) lack {name!r} and are left out of the grid."
        return text

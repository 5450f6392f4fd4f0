"""The evolutionary archive: elites per cell, parent draws, inspirations, islands, all derived from trials."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from agent.evolution.archive import DEFAULT_FEATURES, EXPLOIT, Archive, Feature
from agent.trial import Trial, TrialState

START = datetime(2025, 1, 1, tzinfo=UTC)
#: Programs of 0-99 characters in bin 0, 100-199 in bin 1, ...: the length alone decides the cell.
BY_LENGTH = [Feature("code_length", bins=4, low=0, high=400)]


def trial(
    number: int,
    length: int,
    value: float | None,
    *,
    parents: tuple[int, ...] = (),
    metrics: dict[str, float] | None = None,
    seconds: float = 1.0,
    state: TrialState | None = None,
) -> Trial:
    """A finished trial whose program is ``length`` characters long; a None value makes a failed one."""
    return Trial(
        number=number,
        params={"program": "x" * length, "lr": 0.1},
        state=state or (TrialState.COMPLETE if value is not None else TrialState.FAILED),
        proposer="evolve",
        started_at=START + timedelta(minutes=number),
        finished_at=START + timedelta(minutes=number, seconds=seconds),
        value=value,
        metrics={} if metrics is None else metrics,
        error=None if value is not None else "SyntaxError: invalid syntax",
        feedback="Traceback ..." if value is None else None,
        parents=parents,
    )


def archive(trials: list[Trial], **kwargs: object) -> Archive:
    options: dict = {"code_param": "program", "direction": "minimize", "features": BY_LENGTH, **kwargs}
    return Archive.from_trials(trials, **options)


# Four cells by length; the cell's best differs by direction.
SPREAD = [
    trial(0, 50, 3.0),
    trial(1, 60, 1.0),
    trial(2, 150, 5.0),
    trial(3, 160, 4.0),
    trial(4, 250, 2.0),
    trial(5, 350, 9.0),
    trial(6, 360, 8.0),
]


@pytest.mark.parametrize(
    ("direction", "expected"),
    [("minimize", [1, 4, 3, 6]), ("maximize", [5, 2, 0, 4])],
)
def test_each_cell_keeps_its_best_trial_by_direction(direction: str, expected: list[int]) -> None:
    built = archive(SPREAD, direction=direction)
    assert [t.number for t in built.elites()] == expected  # best first
    assert {built.cell_of(t) for t in built.elites()} == {(0,), (1,), (2,), (3,)}
    assert built.best() == built.elites()[:1]


def test_a_tie_keeps_the_earlier_trial() -> None:
    built = archive([trial(0, 10, 1.0), trial(1, 20, 1.0)])
    assert [t.number for t in built.elites()] == [0]


def test_failed_trials_are_never_elites_but_are_recent_attempts() -> None:
    trials = [
        trial(0, 50, 2.0),
        trial(1, 150, None),
        trial(2, 250, None),
        trial(3, 60, 1.0, state=TrialState.PRUNED),
        Trial(number=4, params={"program": "y"}, state=TrialState.RUNNING, proposer="evolve", started_at=START),
        Trial(
            number=5,
            params={"program": "z"},
            state=TrialState.FAILED,
            proposer="evolve",
            started_at=START,
            finished_at=START,
            error="interrupted",
            interrupted=True,
        ),
    ]
    built = archive(trials)
    assert [t.number for t in built.elites()] == [0]
    assert built.cell_of(trials[1]) is None
    assert [t.number for t in built.recent(3)] == [1, 2, 3]  # oldest first; running and interrupted left out
    assert [t.number for t in built.recent(10)] == [0, 1, 2, 3]
    assert built.recent(0) == []


def test_no_complete_trial_gives_no_parent() -> None:
    rng = random.Random(0)
    assert archive([]).select_parent(rng) is None
    only_failures = archive([trial(0, 50, None), trial(1, 60, None)])
    assert only_failures.select_parent(rng) is None
    assert only_failures.best() == [] and only_failures.elites() == []
    assert "0 of 4 cells occupied" in only_failures.describe()


def test_rebuilding_from_the_same_trials_gives_the_same_archive_and_draws() -> None:
    features = [Feature("code_length", bins=5), Feature("seconds", bins=3, log=True)]
    history = [trial(i, 20 + 37 * i % 400, float((7 * i) % 11), seconds=0.5 + i % 4) for i in range(40)]
    shuffled = random.Random(1).sample(history, len(history))
    first, again = archive(history, features=features), archive(shuffled, features=features)
    assert first.elites() == again.elites()
    rng1, rng2 = random.Random(42), random.Random(42)
    draws = [first.select_parent(rng1) for _ in range(50)]
    assert draws == [again.select_parent(rng2) for _ in range(50)]
    assert len({t.number for t in draws if t is not None}) > 3


def test_the_default_grid_does_not_depend_on_how_long_the_trials_took() -> None:
    # A trial's wall time changes with the machine's load: a grid over it gave a replay other elites, so other
    # parents, prompts and programs. Run time is an axis only when asked for.
    history = [trial(i, 20 + 37 * i % 400, float((7 * i) % 11), seconds=0.5 + i % 4) for i in range(40)]
    loaded = [replace(t, finished_at=t.started_at + timedelta(seconds=0.5 + (3 * t.number) % 7)) for t in history]

    def elites_and_draws(
        trials: list[Trial], features: Sequence[Feature] = DEFAULT_FEATURES
    ) -> tuple[list[int], list[int | None]]:
        built = Archive.from_trials(trials, code_param="program", direction="minimize", features=features)
        rng = random.Random(42)
        draws = [built.select_parent(rng) for _ in range(50)]
        return [t.number for t in built.elites()], [None if t is None else t.number for t in draws]

    assert elites_and_draws(history) == elites_and_draws(loaded)
    timed = [Feature("code_length", bins=6), Feature("seconds", bins=6)]
    assert elites_and_draws(history, features=timed) != elites_and_draws(loaded, features=timed)


def test_parents_mostly_exploit_the_best_and_sometimes_explore() -> None:
    built = archive(SPREAD)
    rng = random.Random(7)
    picks = [built.pick(rng) for _ in range(4000)]
    assert all(p is not None for p in picks)
    exploit = sum(p.how == "exploit" for p in picks if p is not None) / len(picks)
    assert exploit == pytest.approx(EXPLOIT, abs=0.03)
    # Four elites: exploitation weighs them 1, 1/2, 1/3, 1/4 by rank; exploration picks any one.
    harmonic = 1 + 1 / 2 + 1 / 3 + 1 / 4
    counts = Counter(p.trial.number for p in picks if p is not None)
    for rank, number in enumerate([1, 4, 3, 6], start=1):
        share = EXPLOIT / (rank * harmonic) + (1 - EXPLOIT) / 4
        assert counts[number] / len(picks) == pytest.approx(share, abs=0.03)
    assert set(counts) == {1, 4, 3, 6}, "only elites are parents"


def test_inspirations_come_from_other_cells_than_the_parents() -> None:
    built = archive(SPREAD)
    parent = next(t for t in built.elites() if t.number == 4)
    rng = random.Random(3)
    for _ in range(20):
        shown = built.inspirations(parent, rng, k=2)
        assert len(shown) == 2 and parent not in shown
        assert shown[0].number == 1, "the best other elite leads"
        assert all(built.cell_of(t) != built.cell_of(parent) for t in shown)
    assert [t.number for t in built.inspirations(parent, rng, k=5)] == [1, 3, 6]
    assert built.inspirations(parent, rng, k=0) == []
    # A parent that is not an elite: its cell's elite is not shown either.
    loser = SPREAD[0]
    assert [t.number for t in built.inspirations(loser, rng, k=5)] == [4, 3, 6]


def test_islands_follow_lineage_and_take_turns() -> None:
    trials = [
        trial(0, 50, 5.0),  # root: island 0
        trial(1, 150, 4.0),  # root: island 1
        trial(2, 60, 3.0, parents=(0,)),
        trial(3, 250, 1.0, parents=(2,)),  # grandchild of 0: island 0
        trial(4, 160, 2.0, parents=(1, 0)),  # first parent decides: island 1
        trial(5, 350, None, parents=(1,)),
        trial(7, 360, 6.0, parents=(6,)),  # parent not among the trials: counts as the root (6 % 2 = 0)
    ]
    built = archive(trials, islands=2)
    assert [built.island_of(t) for t in trials] == [0, 1, 0, 0, 1, 1, 0]
    assert [t.number for t in built.elites(0)] == [3, 2, 7]
    assert [t.number for t in built.elites(1)] == [4]
    rng = random.Random(0)
    # Seven trials: turns start at island 7 % 2 = 1, then alternate.
    islands = [p.island for p in (built.pick(rng) for _ in range(6)) if p is not None]
    assert islands == [1, 0, 1, 0, 1, 0]
    for _ in range(50):
        parent = built.select_parent(rng, island=1)
        assert parent is not None and built.island_of(parent) == 1
    assert {t.number for t in built.inspirations(trials[2], rng, k=5)} == {3, 7}, "islands evolve apart"
    text = built.describe()
    assert "island 0: #3 = 1" in text and "island 1: #4 = 2" in text
    with pytest.raises(ValueError, match=r"island must be in 0\.\.1"):
        built.select_parent(rng, island=2)


def test_an_island_without_elites_borrows_from_the_whole_archive() -> None:
    built = archive([trial(0, 50, 1.0), trial(2, 150, 2.0, parents=(0,))], islands=3)
    assert built.elites(1) == []
    rng = random.Random(0)
    borrowed = [built.select_parent(rng, island=1) for _ in range(30)]
    assert {t.number for t in borrowed if t is not None} == {0, 2}
    assert "island 1: empty" in built.describe()


def test_a_metric_feature_leaves_out_trials_that_lack_it() -> None:
    trials = [
        trial(0, 50, 1.0, metrics={"memory_mb": 10.0}),
        trial(1, 50, 2.0, metrics={"memory_mb": 90.0}),
        trial(2, 50, 0.5, metrics={}),  # the best value, but no memory reported
        trial(3, 50, 3.0, metrics={"memory_mb": 95.0}),
    ]
    built = archive(trials, features=[Feature("memory_mb", bins=2)])
    assert [t.number for t in built.elites()] == [0, 1]
    assert built.cell_of(trials[2]) is None
    assert built.best()[0].number == 2, "best() ranks every complete trial"
    assert "1 complete trial(s) lack 'memory_mb'" in built.describe()
    typo = archive(trials, features=[Feature("memroy_mb")])
    assert typo.elites() == [] and typo.select_parent(random.Random(0)) is None
    assert "4 complete trial(s) lack 'memroy_mb'" in typo.describe()


def test_data_ranges_stretch_and_log_scale_spreads_run_times() -> None:
    trials = [trial(i, 100, float(i), seconds=s) for i, s in enumerate([0.01, 0.2, 1.5, 20.0, 100.0])]
    log_cells = archive(trials, features=[Feature("seconds", bins=4, log=True)])
    assert [log_cells.cell_of(t) for t in trials] == [(0,), (1,), (2,), (3,), (3,)]
    linear = archive(trials, features=[Feature("seconds", bins=4)])
    assert [linear.cell_of(t) for t in trials] == [(0,), (0,), (0,), (0,), (3,)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": ""}, "needs a name"),
        ({"name": "seconds", "bins": 0}, "bins must be at least 1"),
        ({"name": "seconds", "low": 5.0, "high": 1.0}, "must be below high"),
        ({"name": "seconds", "low": 0.0, "log": True}, "needs positive bounds"),
    ],
)
def test_a_bad_feature_says_what_to_fix(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Feature(**kwargs)


def test_a_bad_archive_says_what_to_fix() -> None:
    with pytest.raises(ValueError, match="'minimize' or 'maximize'"):
        archive([], direction="min")
    with pytest.raises(ValueError, match="islands must be at least 1"):
        archive([], islands=0)
    with pytest.raises(ValueError, match="each feature may appear once"):
        archive([], features=[Feature("seconds"), Feature("seconds", bins=2)])

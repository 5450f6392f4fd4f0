"""Reservations between processes: a proposal is checked against every trial its view did not hold.

Two :class:`~agent.study.Study` objects on one database (a SQLite file, then PostgreSQL), each with its own
connection, stand for two processes. Their interleaving is fixed by the proposer (it lets the other study
act while it proposes), so what the tests check does not depend on how fast anything runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

import agent
from agent import Float, Space
from agent.proposers import Proposer, StudyView
from agent.space import ParamValue
from agent.storage import open_storage
from agent.study import Study
from agent.trial import Proposal

SPACE = Space(x=Float(0.0, 1.0))
#: The point both studies propose: what a seeded proposer in lockstep, or BO on a corner of the box, does.
SAME: dict[str, ParamValue] = {"x": 0.25}
FIRST: dict[str, ParamValue] = {"x": 0.75}


class Interleaved:
    """Proposes :data:`SAME` unless its view holds it; while making its first proposal it lets ``other``
    reserve a trial at :data:`SAME` (and tell it, unless ``tell`` is False), as another process would."""

    name = "interleaved"

    def __init__(self, other: Study, tell: bool) -> None:
        self._other = other
        self._tell = tell
        self.calls = 0

    def propose(self, view: StudyView, n: int, pending: Sequence[Mapping[str, ParamValue]]) -> list[Proposal]:
        self.calls += 1
        if self.calls == 1:
            theirs = self._other.ask()
            assert dict(theirs.params) == SAME
            if self._tell:
                self._other.tell(theirs, 1.0)
            return [Proposal(FIRST, self.name, "first")]
        known = [dict(t.params) for t in view.trials] + [dict(p) for p in pending]
        if SAME not in known:
            return [Proposal(SAME, self.name, "unseen")]
        return [Proposal({"x": 0.1 * self.calls}, self.name, "after a clash")]


class Fixed:
    """Always proposes :data:`SAME`."""

    name = "fixed"

    def propose(self, view: StudyView, n: int, pending: Sequence[Mapping[str, ParamValue]]) -> list[Proposal]:
        return [Proposal(SAME, self.name, "fixed")]


def _opened(url: str, proposer: Proposer) -> Study:
    """The study ``s`` opened anew, on a connection of its own, proposing with ``proposer``."""
    storage = open_storage(url)
    record = storage.get_study("s")
    assert record is not None
    return Study(storage, record, proposer=proposer)


@pytest.mark.parametrize("tell", [True, False], ids=["told", "running"])
def test_a_prepared_proposal_is_checked_against_trials_started_while_the_last_one_was_made(
    url: str, tell: bool
) -> None:
    """B reserves :data:`SAME` after A last read the study, then A reserves its first proposal: A's view of
    the study now lacks B's trial though it holds a trial numbered after it (its own). The proposal A
    prepares in the background from that view is :data:`SAME` again; reserving it must be refused, and A
    must propose anew from a view that holds B's trial."""
    agent.create_study("s", SPACE, storage=url, proposer="random").close()
    b = _opened(url, Fixed())
    proposer = Interleaved(b, tell)
    a = _opened(url, proposer)
    a.prefetch = True  # what optimize does with several workers or a model
    mine = a.ask()
    second = a.ask(last=True)
    points = [dict(t.params) for t in a.trials]
    assert (mine.number, dict(mine.params)) == (1, FIRST)
    assert dict(second.params) != SAME, "B's point was reserved twice"
    assert proposer.calls == 3, "the prepared proposal was refused and a new one made"
    assert points.count(SAME) == 1 and len(points) == 3
    a.close()
    b.close()

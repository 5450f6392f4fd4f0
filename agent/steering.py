"""Steering a live study: the events people add (narrow a range, pin a parameter, a note...) applied to its space.

Events are stored (:class:`agent.storage.StudyEvent`) and applied in order, undone ones skipped, every
time a proposal is made, so every process sharing a study follows the same steering from its next
proposal on. Nothing here touches the stored space: undoing an event simply stops applying it, and trials
outside a narrowed space stay in the history.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agent.errors import ConfigError
from agent.space import Categorical, Float, Int, Param, ParamValue, Space, SpaceError
from agent.storage.base import Storage
from agent.storage.records import StudyEvent, StudyRecord

log = logging.getLogger(__name__)

KINDS = ("narrow", "fix", "free", "add_choice", "remove_choice", "note")


class SteeringError(ConfigError):
    """An event that cannot apply to the study (an unknown parameter, a widening range, a bad value)."""


@dataclass(frozen=True)
class Steering:
    """A study's space as its active events leave it.

    Attributes:
        space: the stored space with ranges narrowed and choices changed; pinned parameters included.
        pinned: the pinned parameters and their values.
        notes: the texts of the active notes, oldest first.
    """

    space: Space
    pinned: dict[str, ParamValue]
    notes: tuple[str, ...] = ()

    @property
    def current_space(self) -> Space:
        """What proposers search: the steered space without the pinned parameters."""
        return Space({name: p for name, p in self.space.items() if name not in self.pinned})

    def complete(self, params: Mapping[str, ParamValue]) -> dict[str, ParamValue]:
        """A proposal over :attr:`current_space` with the pinned values filled in."""
        return {**params, **self.pinned}

    def contains(self, params: Mapping[str, ParamValue]) -> bool:
        """Whether a point (an older trial's) lies inside the steered space, pins included."""
        return not self.space.problems(params) and all(params.get(n) == v for n, v in self.pinned.items())


def steer(stored: Space, events: Iterable[StudyEvent]) -> Steering:
    """Apply the active ``events``, in order, to the ``stored`` space.

    Each event was checked against the ones in force before it when it was stored, and undo takes the newest
    first, so a replay meets the same state; only events stored by two processes at once can clash.
    """
    steering = Steering(stored, {})
    for event in events:
        if not event.active:
            continue
        try:
            steering = apply(stored, steering, event.kind, event.payload)
        except SteeringError as exc:  # two processes steered at once; a study must never stop over it
            log.warning("steering event %d (%s) no longer applies and is skipped: %s", event.id, event.kind, exc)
    return steering


def apply(stored: Space, steering: Steering, kind: str, payload: Mapping[str, Any]) -> Steering:
    """``steering`` after one more event; raises :class:`SteeringError` when the event cannot apply."""
    if kind == "note":
        return dataclasses.replace(steering, notes=(*steering.notes, str(payload["text"])))
    if kind not in KINDS:
        raise SteeringError(f"unknown event kind {kind!r}; use one of {', '.join(KINDS)}", field="event")
    name = str(payload["name"])
    param = _param(steering.space, name)
    if kind == "fix":
        return _fix(steering, name, param, payload["value"])
    if kind == "free":
        if name not in steering.pinned:
            raise SteeringError("is not pinned, so there is nothing to free; pin it first with fix()", field=name)
        return dataclasses.replace(steering, pinned={n: v for n, v in steering.pinned.items() if n != name})
    if kind == "narrow":
        changed: Param = _narrow(stored[name], name, payload["low"], payload["high"])
    else:
        changed = _choices(param, name, kind, payload["value"])
    pinned = steering.pinned
    if name in pinned and changed.problem(pinned[name]):
        raise SteeringError(f"is pinned at {pinned[name]!r}, outside the new values; free it first", field=name)
    return dataclasses.replace(steering, space=Space({**steering.space, name: changed}))


def _param(space: Space, name: str) -> Param:
    if name not in space:
        raise SteeringError(f"not a parameter of this study (parameters: {', '.join(space)})", field=name)
    return space[name]


def _fix(steering: Steering, name: str, param: Param, value: Any) -> Steering:
    problem = param.problem(value)
    if problem:
        raise SteeringError(f"cannot be pinned at {value!r}: {problem} (expected {param.describe()})", field=name)
    return dataclasses.replace(steering, pinned={**steering.pinned, name: param.normalize(value)})


def _narrow(stored: Param, name: str, low: Any, high: Any) -> Param:
    """The stored range narrowed to ``[low, high]``: always relative to the stored bounds, never wider."""
    if not isinstance(stored, Float | Int):
        raise SteeringError(f"is {stored.kind}; only float and int parameters can be narrowed", field=name)
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)):
        raise SteeringError(f"low and high must be numbers, got {low!r} and {high!r}", field=name)
    if not low < high:
        raise SteeringError(f"low ({low}) must be below high ({high}); to hold one value, use fix()", field=name)
    if low < stored.low or high > stored.high:
        raise SteeringError(
            f"[{low}, {high}] is not inside the study's range [{stored.low}, {stored.high}]; narrowing cannot widen it",
            field=name,
        )
    if isinstance(stored, Int) and not (float(low).is_integer() and float(high).is_integer()):
        raise SteeringError(
            f"is an int parameter: low and high must be whole numbers, got {low} and {high}", field=name
        )
    try:
        if isinstance(stored, Int):
            return dataclasses.replace(stored, low=int(low), high=int(high))
        return dataclasses.replace(stored, low=float(low), high=float(high))
    except SpaceError as exc:
        raise SteeringError(f"cannot be narrowed to [{low}, {high}]: {exc}", field=name) from None


def _choices(param: Param, name: str, kind: str, value: Any) -> Categorical:
    if not isinstance(param, Categorical):
        raise SteeringError(f"is {param.kind}; only categorical parameters have choices", field=name)
    present = param.problem(value) is None
    if kind == "add_choice":
        if present:
            raise SteeringError(f"{value!r} is already a choice", field=name)
        try:
            return Categorical([*param.choices, value])
        except SpaceError as exc:
            raise SteeringError(f"cannot add {value!r}: {exc}", field=name) from None
    if not present:
        raise SteeringError(f"{value!r} is not a choice (choices: {list(param.choices)})", field=name)
    remaining = [c for c in param.choices if Categorical([c]).problem(value) is not None]
    if not remaining:
        raise SteeringError(f"{value!r} is the last choice; at least one must remain (pin it with fix())", field=name)
    return Categorical(remaining)


def describe(kind: str, payload: Mapping[str, Any]) -> str:
    """One short phrase for ``status`` and ``show``: ``lr narrowed to [0.0001, 0.01]``."""
    p = payload
    phrases = {
        "narrow": lambda: f"{p['name']} narrowed to [{p['low']}, {p['high']}]",
        "fix": lambda: f"{p['name']} pinned at {p['value']!r}",
        "free": lambda: f"{p['name']} freed",
        "add_choice": lambda: f"{p['name']} choice {p['value']!r} added",
        "remove_choice": lambda: f"{p['name']} choice {p['value']!r} removed",
        "note": lambda: f"note: {p['text']}",
    }
    return phrases[kind]() if kind in phrases else f"{kind} {dict(p)}"


def steering_line(events: Iterable[Mapping[str, Any]]) -> str:
    """``status``'s and ``show``'s one line of steering, from :func:`agent.summary.summarize`'s events."""
    return "; ".join(
        f"{describe(e['kind'], e['payload'])} ({e['author']}, "
        f"{datetime.fromtimestamp(e['created_at'], UTC):%Y-%m-%d %H:%M})"
        for e in events
    )


def event_record(event: StudyEvent) -> dict[str, Any]:
    """An event as JSON (``--json`` output, :func:`steering_line`)."""
    return {"kind": event.kind, "payload": event.payload, "author": event.author, "created_at": event.created_at}


class Steerable:
    """The steering half of :class:`agent.study.Study`: each method stores one event, checked first.

    An event is checked against the steering in force (so a bad one is refused with the fix, not stored),
    then stored; every proposer applies it from its next proposal on, in this process and every other.
    """

    space: Space
    _storage: Storage
    _record: StudyRecord

    def narrow(self, name: str, low: float, high: float, author: str = "api") -> StudyEvent:
        """Search ``name`` (float or int) only in ``[low, high]``, inside its stored range."""
        return self._add("narrow", {"name": name, "low": low, "high": high}, author)

    def fix(self, name: str, value: ParamValue, author: str = "api") -> StudyEvent:
        """Pin ``name`` at ``value``: proposers stop searching it and every new trial gets ``value``."""
        return self._add("fix", {"name": name, "value": value}, author)

    def free(self, name: str, author: str = "api") -> StudyEvent:
        """Search a pinned parameter again."""
        return self._add("free", {"name": name}, author)

    def add_choice(self, name: str, value: ParamValue, author: str = "api") -> StudyEvent:
        """Offer one more choice for a categorical parameter."""
        return self._add("add_choice", {"name": name, "value": value}, author)

    def remove_choice(self, name: str, value: ParamValue, author: str = "api") -> StudyEvent:
        """Stop proposing one choice of a categorical parameter (at least one must remain)."""
        return self._add("remove_choice", {"name": name, "value": value}, author)

    def note(self, text: str, author: str = "api") -> StudyEvent:
        """Leave a note for the model-driven proposers (shown in their prompts) and for ``status``."""
        if not isinstance(text, str) or not text.strip():
            raise SteeringError("a note needs some text, e.g. study.note('lr above 0.01 diverges')", field="note")
        return self._add("note", {"text": text.strip()}, author)

    def undo(self) -> StudyEvent | None:
        """Stop applying the newest event in force (it stays in :attr:`events`); None when there is none."""
        return self._storage.undo_event(self._record.id)

    @property
    def events(self) -> list[StudyEvent]:
        """Every event of the study, oldest first, undone ones included."""
        return self._storage.events(self._record.id)

    @property
    def steering(self) -> Steering:
        """The stored space with the active events applied (read fresh: another process may have steered)."""
        return steer(self.space, self.events)

    @property
    def current_space(self) -> Space:
        """What proposers search now: the steered space without the pinned parameters."""
        return self.steering.current_space

    @property
    def pinned(self) -> dict[str, ParamValue]:
        return self.steering.pinned

    @property
    def notes(self) -> tuple[str, ...]:
        return self.steering.notes

    def _add(self, kind: str, payload: dict[str, Any], author: str) -> StudyEvent:
        apply(self.space, self.steering, kind, payload)  # refuses a bad event before it is stored
        return self._storage.add_event(self._record.id, kind, payload, author)

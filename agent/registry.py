"""Named extension points: parameter types, proposers, model backends, evaluators.

Each extension point is a :class:`Registry`: a name (what a job file or ``create_study`` writes), a factory,
and the pydantic model of the options that kind accepts. A new proposer, backend or evaluator is its own
module plus one ``register(...)`` call; nothing else in tunesmith has to learn its name, and its options are
checked with the same messages as the built-in ones (``proposer.batch_size: Input should be ...``), because
the registry, not each caller, turns a pydantic error into lines that name the key.

Unknown names raise :class:`~agent.errors.ConfigError` listing the names that are registered, so a typo
is answered with the list to pick from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, TypeVar, overload

import pydantic
from pydantic import BaseModel, BeforeValidator, ConfigDict
from pydantic_core import PydanticCustomError

from agent.budget import parse_duration
from agent.errors import ConfigError

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

#: ``factory(options, context)``: options are the validated options model (or the raw mapping when the
#: entry has no model), context whatever the registry's users hand over (a seed, a storage, a folder).
Factory = Callable[[Any, Any], T]
#: ``check(raw_options, context) -> problems``: checks a schema cannot express (a program on PATH, an
#: importable module). Problems are ``"key: message"`` lines relative to the options' table; the check
#: must cope with values of the wrong type, because it runs even when the schema found problems.
Check = Callable[[Mapping[str, Any], Any], list[str]]


#: Seconds, given as a number or a string such as "30m" (checked by :func:`agent.budget.parse_duration`).
Duration = Annotated[float, BeforeValidator(parse_duration)]


class Options(BaseModel):
    """Base of every options model: unknown keys are refused and values are not converted.

    Strict, because a job file is typed: ``batch_size = "4"`` or ``zero_shot = true`` is a mistake to report,
    not to guess at. Integers are still accepted where a float is expected.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class NoOptions(Options):
    """The options model of a kind that takes none."""


class OptionsError(ConfigError):
    """Settings with one or more faulty keys. ``problems`` holds one ``"key: message"`` line each.

    ``field`` is the key of the first problem, so code that reports a single field still points somewhere.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))
        first = self.problems[0] if self.problems else ""
        self.field = first.split(":", 1)[0] if ":" in first else None


def config_problem(message: str) -> PydanticCustomError:
    """A validation error whose message is shown as written (no "Value error, ", no ``got ...`` added)."""
    return PydanticCustomError("tunesmith", "{message}", {"message": message})


def describe_errors(
    exc: pydantic.ValidationError, where: str | None = None, allowed: Sequence[str] | None = None
) -> list[str]:
    """One ``key: message`` line per pydantic error, the key prefixed with ``where`` (``"proposer"``).

    Args:
        exc: the validation error.
        where: the table the options come from; None for none.
        allowed: the keys to list for an unknown key; by default those of the model that failed is unknown,
            so callers that know the table pass them.
    """
    return [describe_error(error, where, allowed) for error in exc.errors()]


def describe_error(error: Mapping[str, Any], where: str | None = None, allowed: Sequence[str] | None = None) -> str:
    """The line for one pydantic error (see :func:`describe_errors`)."""
    key = ".".join([*([where] if where else []), *(str(p) for p in error["loc"])]) or (where or "settings")
    if error["type"] == "missing":
        return f"{key}: missing required key"
    if error["type"] == "extra_forbidden":
        listed = f" (allowed here: {', '.join(allowed)})" if allowed is not None else ""
        return f"{key}: unknown key{listed}"
    if error["type"] in ("model_type", "dict_type", "model_attributes_type"):
        return f"{key}: expected a table, got {error['input']!r}"
    if error["type"] == "tunesmith":
        return f"{key}: {error['msg']}"
    message = str(error["msg"]).removeprefix("Value error, ")
    shown = repr(error["input"])
    said = message.endswith(shown) or (isinstance(error["input"], str) and shown in message)
    return f"{key}: {message}" + ("" if said else f", got {shown}")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered kind.

    Attributes:
        name: what users write.
        factory: builds the thing from ``(options, context)``.
        options: the pydantic model of its options; None when the factory checks a raw mapping itself.
        check: extra checks on the raw options (see :data:`Check`).
        meta: facts other code asks about the kind (``free=True`` for a backend that costs nothing).
    """

    name: str
    factory: Factory[T]
    options: type[BaseModel] | None = None
    check: Check | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Kinds of one extension point, by name, in registration order.

    Args:
        what: what a kind is, for messages (``"proposer"``).
        field: the setting that names a kind (``"proposer"``, ``"model"``), for :class:`ConfigError`.
    """

    def __init__(self, what: str, field: str | None = None) -> None:
        self.what = what
        self.field = field
        self._entries: dict[str, Entry[T]] = {}

    # Registering ----------------------------------------------------------------------------------------
    @overload
    def register(
        self,
        name: str,
        factory: None = None,
        *,
        options: type[BaseModel] | None = None,
        check: Check | None = None,
        replace: bool = False,
        **meta: Any,
    ) -> Callable[[F], F]: ...

    @overload
    def register(
        self,
        name: str,
        factory: F,
        *,
        options: type[BaseModel] | None = None,
        check: Check | None = None,
        replace: bool = False,
        **meta: Any,
    ) -> F: ...

    def register(
        self,
        name: str,
        factory: F | None = None,
        *,
        options: type[BaseModel] | None = None,
        check: Check | None = None,
        replace: bool = False,
        **meta: Any,
    ) -> F | Callable[[F], F]:
        """Add a kind; usable as ``register(name, factory, options=...)`` or as a decorator.

        Raises:
            ConfigError: the name is taken (pass ``replace=True`` to swap an implementation on purpose).
        """
        if not isinstance(name, str) or not name:
            raise ConfigError(f"a {self.what} needs a non-empty name, got {name!r}")
        if options is not None and not (isinstance(options, type) and issubclass(options, BaseModel)):
            raise ConfigError(f"the options of {self.what} {name!r} must be a pydantic model class, got {options!r}")

        def add(fn: F) -> F:
            if name in self._entries and not replace:
                raise ConfigError(f"a {self.what} named {name!r} is already registered; pass replace=True to swap it")
            self._entries[name] = Entry(name, fn, options, check, dict(meta))
            return fn

        return add if factory is None else add(factory)

    def unregister(self, name: str) -> None:
        """Remove a kind (tests that register one of their own clean up with this)."""
        self.get(name)
        del self._entries[name]

    # Looking up -----------------------------------------------------------------------------------------
    def get(self, name: str) -> Entry[T]:
        """The entry of ``name``.

        Raises:
            ConfigError: no such kind; the message lists the known ones.
        """
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ConfigError(self.unknown(name), self.field) from None

    def unknown(self, name: object) -> str:
        """The message for an unknown name: ``unknown proposer 'genetic'; expected one of 'auto', ...``."""
        known = ", ".join(repr(n) for n in self._entries) or "(none registered)"
        return f"unknown {self.what} {name!r}; expected one of {known}"

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def entries(self) -> list[Entry[T]]:
        return list(self._entries.values())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def options_model(self, name: str) -> type[BaseModel] | None:
        return self.get(name).options

    # Options and building -------------------------------------------------------------------------------
    def problems(self, name: str, raw: Mapping[str, Any], context: Any = None, where: str | None = None) -> list[str]:
        """Every problem of ``raw`` as options of ``name``: the schema's, then the kind's own checks."""
        entry = self.get(name)
        found: list[str] = []
        if entry.options is not None:
            try:
                entry.options.model_validate(dict(raw))
            except pydantic.ValidationError as exc:
                found += describe_errors(exc, where, list(entry.options.model_fields))
        if entry.check is not None:
            prefix = f"{where}." if where else ""
            found += [prefix + line for line in entry.check(raw, context)]
        return found

    def options(self, name: str, options: Mapping[str, Any] | BaseModel | None = None, where: str | None = None) -> Any:
        """``options`` validated by the options model of ``name`` (the raw mapping when it has none).

        Raises:
            ConfigError: unknown ``name``.
            OptionsError: faulty options; every problem named by its key.
        """
        entry = self.get(name)
        if entry.options is None:
            return dict(options or {}) if not isinstance(options, BaseModel) else options
        if isinstance(options, entry.options):
            return options
        raw = options.model_dump() if isinstance(options, BaseModel) else dict(options or {})
        try:
            return entry.options.model_validate(raw)
        except pydantic.ValidationError as exc:
            raise OptionsError(describe_errors(exc, where, list(entry.options.model_fields))) from None

    def build(
        self,
        name: str,
        options: Mapping[str, Any] | BaseModel | None = None,
        context: Any = None,
        where: str | None = None,
    ) -> T:
        """Validate ``options`` and call the factory of ``name`` with them and ``context``.

        Raises:
            ConfigError: unknown ``name``.
            OptionsError: faulty options, or problems found by the kind's own checks (all of them).
        """
        entry = self.get(name)
        validated = self.options(name, options, where)
        if entry.check is not None:
            raw = validated.model_dump() if isinstance(validated, BaseModel) else validated
            prefix = f"{where}." if where else ""
            problems = [prefix + line for line in entry.check(raw, context)]
            if problems:
                raise OptionsError(problems)
        return entry.factory(validated, context)

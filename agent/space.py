"""Search spaces: what may be proposed, how it maps to the unit cube, and how a candidate is checked.

Every proposer works through this module. Numeric proposers (random, bo) see the space as the unit cube
``[0, 1]^d`` (:meth:`Space.encode` / :meth:`Space.decode`); the language model sees it as a JSON Schema
(:meth:`Space.json_schema`); and every candidate, whoever made it, passes :meth:`Space.validate`, which
reports all of its problems at once so that a model can be asked to repair them in one turn.

Text and Code parameters have no place in the unit cube: only the model proposes them, and numeric
proposers carry their current value along.

Parameter types are looked up by their job-file name (``type = "float"``) in :data:`PARAM_TYPES`. A new
type subclasses one of the five families, so that every proposer already knows how to search it, and is
added with :func:`register_param_type`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias, TypeVar

import numpy as np

from agent.errors import TunesmithError
from agent.registry import Registry

if TYPE_CHECKING:
    from agent.evolution.regions import CodeLocation

Scalar: TypeAlias = str | int | float | bool | None
ParamValue: TypeAlias = Scalar

# No "." or "[": names are also ``{placeholders}`` in command templates, where those mean attribute access.
_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


class SpaceError(TunesmithError, ValueError):
    """A search space that cannot be built; the message names the parameter and the fix.

    ``detail`` is the message without the parameter's repr, for callers that name it their own way
    (a job file names the TOML key instead).
    """

    def __init__(self, detail: str, param: object = None) -> None:
        self.detail = detail
        super().__init__(detail if param is None else f"{param!r}: {detail}")


class InvalidCandidate(TunesmithError, ValueError):
    """A candidate that does not fit the space. ``problems`` lists every problem, one line each."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool | np.bool_)


@dataclass(frozen=True)
class Float:
    """A real number in ``[low, high]``; ``log=True`` searches ``log(x)`` uniformly (needs ``low > 0``)."""

    low: float
    high: float
    log: bool = False

    kind: ClassVar[str] = "float"

    def __post_init__(self) -> None:
        _check_bounds(self, self.low, self.high, self.log)

    @property
    def n_dims(self) -> int:
        return 1

    def from_unit(self, u: np.ndarray) -> float:
        t = float(np.clip(u[0], 0.0, 1.0))
        if self.log:
            value = math.exp(math.log(self.low) + t * (math.log(self.high) - math.log(self.low)))
        else:
            value = self.low + t * (self.high - self.low)
        return min(max(value, self.low), self.high)

    def to_unit(self, value: ParamValue) -> np.ndarray:
        v = float(value)  # type: ignore[arg-type]
        if self.log:
            t = (math.log(v) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        else:
            t = (v - self.low) / (self.high - self.low)
        return np.array([t])

    def problem(self, value: object) -> str | None:
        if not _is_number(value):
            return f"{_show(value)} is not a number"
        v = float(value)  # type: ignore[arg-type]
        if not math.isfinite(v):
            return f"{_show(value)} is not a finite number"
        if v < self.low:
            return f"{_show(value)} is below the minimum {_show(self.low)}"
        if v > self.high:
            return f"{_show(value)} is above the maximum {_show(self.high)}"
        return None

    def normalize(self, value: ParamValue) -> float:
        return float(value)  # type: ignore[arg-type]

    def json_schema(self) -> dict[str, Any]:
        return {"type": "number", "minimum": self.low, "maximum": self.high}

    def describe(self) -> str:
        return f"float in [{_show(self.low)}, {_show(self.high)}]" + (", log scale" if self.log else "")


@dataclass(frozen=True)
class Int:
    """An integer in ``[low, high]`` on the grid ``low, low + step, ...``; ``log=True`` needs ``low >= 1``."""

    low: int
    high: int
    log: bool = False
    step: int = 1

    kind: ClassVar[str] = "int"

    def __post_init__(self) -> None:
        _check_bounds(self, self.low, self.high, self.log)
        if self.step < 1:
            raise SpaceError("step must be at least 1", self)
        if (self.high - self.low) % self.step:
            raise SpaceError(f"high - low ({self.high - self.low}) must be a multiple of step", self)
        if self.log and self.step != 1:
            raise SpaceError("a log-scaled Int must have step 1", self)

    @property
    def n_dims(self) -> int:
        return 1

    @property
    def _n_values(self) -> int:
        return (self.high - self.low) // self.step + 1

    def _log_range(self) -> tuple[float, float]:
        # Widen by half a unit so that low and high get as much of the cube as their neighbours.
        return math.log(self.low - 0.5), math.log(self.high + 0.5)

    def from_unit(self, u: np.ndarray) -> int:
        t = float(np.clip(u[0], 0.0, 1.0))
        if self.log:
            lo, hi = self._log_range()
            return min(max(round(math.exp(lo + t * (hi - lo))), self.low), self.high)
        index = min(int(t * self._n_values), self._n_values - 1)
        return self.low + index * self.step

    def to_unit(self, value: ParamValue) -> np.ndarray:
        v = int(value)  # type: ignore[arg-type]
        if self.log:
            lo, hi = self._log_range()
            return np.array([(math.log(v) - lo) / (hi - lo)])
        return np.array([((v - self.low) // self.step + 0.5) / self._n_values])

    def problem(self, value: object) -> str | None:
        if not _is_number(value) or (isinstance(value, float | np.floating) and not float(value).is_integer()):
            return f"{_show(value)} is not an integer"
        v = int(value)  # type: ignore[call-overload]
        if v < self.low:
            return f"{v} is below the minimum {self.low}"
        if v > self.high:
            return f"{v} is above the maximum {self.high}"
        if (v - self.low) % self.step:
            return f"{v} is not on the grid {self.low}, {self.low + self.step}, ... (step {self.step})"
        return None

    def normalize(self, value: ParamValue) -> int:
        return int(value)  # type: ignore[arg-type]

    def json_schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": self.low, "maximum": self.high}

    def describe(self) -> str:
        text = f"integer in [{self.low}, {self.high}]"
        if self.step != 1:
            text += f", step {self.step}"
        return text + (", log scale" if self.log else "")


@dataclass(frozen=True)
class Categorical:
    """One of a list of choices (strings, numbers, booleans); one-hot in the unit cube."""

    choices: tuple[Scalar, ...]

    kind: ClassVar[str] = "categorical"

    def __init__(self, choices: Sequence[Scalar]) -> None:
        if isinstance(choices, str | bytes) or not isinstance(choices, Sequence):
            raise SpaceError("choices must be a list, e.g. ['adam', 'sgd']", _Repr(f"Categorical({choices!r})"))
        object.__setattr__(self, "choices", tuple(choices))
        if not self.choices:
            raise SpaceError("choices must not be empty", self)
        for choice in self.choices:
            if choice is not None and not isinstance(choice, str | int | float | bool):
                raise SpaceError(f"choice {choice!r} is not a string, number or boolean", self)
        keys = [_choice_key(c) for c in self.choices]
        if len(set(keys)) != len(keys):
            raise SpaceError("choices must be distinct", self)

    @property
    def n_dims(self) -> int:
        return len(self.choices)

    def from_unit(self, u: np.ndarray) -> Scalar:
        return self.choices[int(np.argmax(u))]

    def to_unit(self, value: ParamValue) -> np.ndarray:
        one_hot = np.zeros(len(self.choices))
        one_hot[self._index(value)] = 1.0
        return one_hot

    def _index(self, value: object) -> int:
        key = _choice_key(value)
        for i, choice in enumerate(self.choices):
            if _choice_key(choice) == key:
                return i
        raise KeyError(value)

    def problem(self, value: object) -> str | None:
        try:
            self._index(value)
        except (KeyError, TypeError):
            return f"{_show(value)} is not one of {', '.join(_show(c) for c in self.choices)}"
        return None

    def normalize(self, value: ParamValue) -> Scalar:
        return self.choices[self._index(value)]

    def json_schema(self) -> dict[str, Any]:
        return {"enum": list(self.choices)}

    def describe(self) -> str:
        return "one of " + ", ".join(_show(c) for c in self.choices)


@dataclass(frozen=True)
class Text:
    """Free text (a prompt, an instruction). Only the language model proposes it; others keep ``default``."""

    default: str
    max_length: int | None = None

    kind: ClassVar[str] = "text"

    def __post_init__(self) -> None:
        if not isinstance(self.default, str):
            raise SpaceError("default must be a string", self)
        if self.max_length is not None and self.max_length < 1:
            raise SpaceError("max_length must be at least 1", self)
        if self.max_length is not None and len(self.default) > self.max_length:
            raise SpaceError(f"default is longer than max_length ({self.max_length})", self)

    @property
    def n_dims(self) -> int:
        return 0

    def problem(self, value: object) -> str | None:
        if not isinstance(value, str):
            return f"{_show(value)} is not a string"
        if self.max_length is not None and len(value) > self.max_length:
            return f"text of {len(value)} characters is longer than the maximum {self.max_length}"
        return None

    def normalize(self, value: ParamValue) -> str:
        return str(value)

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "string"}
        if self.max_length is not None:
            schema["maxLength"] = self.max_length
        return schema

    def describe(self) -> str:
        return "text" + (f" of at most {self.max_length} characters" if self.max_length else "")


@dataclass(frozen=True)
class Code(Text):
    """Source code in ``language``. Like Text, proposed by the model only; run inside the sandbox.

    ``file`` (and ``region``) say where the code lives in the objective's folder: a candidate is written
    there, in a fresh copy of the folder, before it is evaluated; ``default`` is what the file holds today.
    Build one with :meth:`from_file`; a job file writes ``{ type = "code", file = "slow.py", region = "f" }``.
    """

    language: str = "python"
    file: str | None = None
    region: str | None = None

    kind: ClassVar[str] = "code"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.region is not None and self.file is None:
            raise SpaceError("region needs a file: the region is a marked part of that file", self)

    @classmethod
    def from_file(
        cls, file: str | Path, region: str | None = None, *, base: str | Path = ".", language: str = "python"
    ) -> Code:
        """The code in ``file`` (relative to ``base``), or in its region marked ``# tunesmith: begin NAME`` ...
        ``# tunesmith: end NAME``, as the starting point.

        Raises:
            SpaceError: the file cannot be read, or the region is not marked as it should be.
        """
        from agent.evolution.regions import CodeLocation, RegionError, read_location

        try:
            default = read_location(Path(base), CodeLocation(str(file), region))
        except (OSError, RegionError) as exc:
            raise SpaceError(str(exc)) from None
        return cls(default, language=language, file=str(file), region=region)

    @property
    def location(self) -> CodeLocation | None:
        """Where the code lives, when it points at a file."""
        from agent.evolution.regions import CodeLocation

        return None if self.file is None else CodeLocation(self.file, self.region)

    def describe(self) -> str:
        where = "" if self.file is None else f" ({self.file}{', region ' + self.region if self.region else ''})"
        return f"{self.language} source code{where}"


Param: TypeAlias = Float | Int | Categorical | Text | Code
NumericParam: TypeAlias = Float | Int | Categorical
P = TypeVar("P", bound=type[Param])

#: Parameter types by job-file name; each entry's ``meta["cls"]`` is the class.
PARAM_TYPES: Registry[Param] = Registry("parameter type", field="type")


def register_param_type(cls: P, *, replace: bool = False) -> P:
    """Make ``cls`` usable in spaces and job files under ``cls.kind``; usable as a class decorator.

    ``cls`` must be a frozen dataclass subclassing Float, Int, Categorical, Text or Code: proposers search a
    parameter through its family (the unit cube for numbers and choices, the model alone for text), so a
    new type refines one (a percentage is a Float from 0 to 100) rather than inventing a search of its own.

    Raises:
        SpaceError: ``cls`` is not such a class, or has no ``kind`` of its own.
    """
    if not (isinstance(cls, type) and issubclass(cls, Float | Int | Categorical | Text) and is_dataclass(cls)):
        raise SpaceError(f"{cls!r} must be a dataclass subclassing Float, Int, Categorical, Text or Code")
    kind = cls.__dict__.get("kind")
    if not isinstance(kind, str) or not kind:
        raise SpaceError(f'{cls.__name__} needs a kind of its own, e.g. kind: ClassVar[str] = "percent"')
    PARAM_TYPES.register(kind, lambda options, context: cls(**options), replace=replace, cls=cls)
    return cls


for _builtin in (Float, Int, Categorical, Text, Code):
    register_param_type(_builtin)


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not _NAME_PATTERN.match(name):
        raise SpaceError(
            f"parameter name {name!r} is not valid: use letters, digits, '_' or '-', starting with a letter or '_'"
        )


class _Repr:
    """Shows a given text as its repr, for error messages about arguments that never became a parameter."""

    def __init__(self, text: str) -> None:
        self._text = text

    def __repr__(self) -> str:
        return self._text


def _check_bounds(param: Float | Int, low: float, high: float, log: bool) -> None:
    for bound, name in ((low, "low"), (high, "high")):
        if not _is_number(bound) or not math.isfinite(bound):
            raise SpaceError(f"{name} must be a finite number", param)
        if isinstance(param, Int) and not isinstance(bound, int | np.integer):
            raise SpaceError(f"{name} must be an integer", param)
    if low >= high:
        raise SpaceError(f"low ({_show(low)}) must be below high ({_show(high)})", param)
    if log and low <= 0:
        raise SpaceError(f"a log-scaled parameter needs low > 0 (got {_show(low)})", param)


def _choice_key(value: object) -> tuple[str, object]:
    # True == 1 in Python; a categorical must tell them apart, and 1 from 1.0 too.
    return (type(value).__name__, value)


def _show(value: object) -> str:
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:37] + "...")
    return repr(value)


class Space(Mapping[str, Param]):
    """A named set of parameters, in declaration order: ``Space(lr=Float(1e-5, 1e-1, log=True), ...)``.

    Behaves as a read-only mapping from name to parameter.
    """

    def __init__(self, params: Mapping[str, Param] | None = None, /, **kwargs: Param) -> None:
        merged: dict[str, Param] = dict(params or {})
        for name in kwargs:
            if name in merged:
                raise SpaceError(f"parameter {name!r} is declared twice")
        merged.update(kwargs)
        if not merged:
            raise SpaceError("a space needs at least one parameter, e.g. Space(x=Float(0, 1))")
        for name, param in merged.items():
            _check_name(name)
            if not isinstance(param, Float | Int | Categorical | Text):
                raise SpaceError(f"parameter {name!r}: {param!r} is not a Float, Int, Categorical, Text or Code")
        self._params = merged
        self._slices: dict[str, slice] = {}
        offset = 0
        for name, param in self.numeric_items():
            self._slices[name] = slice(offset, offset + param.n_dims)
            offset += param.n_dims
        self.n_dims = offset

    # Mapping protocol -------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> Param:
        return self._params[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Space) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(repr(self.to_dict()))

    def __repr__(self) -> str:
        return "Space(" + ", ".join(f"{n}={p!r}" for n, p in self._params.items()) + ")"

    def numeric_items(self) -> list[tuple[str, NumericParam]]:
        """The parameters that live in the unit cube, in order."""
        return [(n, p) for n, p in self._params.items() if isinstance(p, Float | Int | Categorical)]

    def text_items(self) -> list[tuple[str, Text]]:
        """The Text and Code parameters, which only the language model proposes."""
        return [(n, p) for n, p in self._params.items() if isinstance(p, Text)]

    # Unit cube ------------------------------------------------------------------------------------------
    def encode(self, candidate: Mapping[str, ParamValue]) -> np.ndarray:
        """Map a valid candidate to a point of ``[0, 1]^n_dims`` (Text and Code are left out).

        Returns:
            array of shape ``(n_dims,)``.
        """
        x = np.empty(self.n_dims)
        for name, param in self.numeric_items():
            x[self._slices[name]] = param.to_unit(candidate[name])
        return x

    def decode(self, x: np.ndarray, text_values: Mapping[str, str] | None = None) -> dict[str, ParamValue]:
        """Map a point of the unit cube (shape ``(n_dims,)``) to a valid candidate.

        Values outside ``[0, 1]`` are clipped. Text and Code take ``text_values`` where given, else
        their defaults.
        """
        x = np.asarray(x, dtype=float)
        if x.shape != (self.n_dims,):
            raise ValueError(f"expected a point of shape ({self.n_dims},), got {x.shape}")
        candidate: dict[str, ParamValue] = {}
        for name, param in self._params.items():
            if isinstance(param, Text):
                candidate[name] = (text_values or {}).get(name, param.default)
            else:
                candidate[name] = param.from_unit(x[self._slices[name]])
        return candidate

    def defaults(self) -> dict[str, str]:
        """Default values of the Text and Code parameters."""
        return {name: param.default for name, param in self.text_items()}

    # Validation -----------------------------------------------------------------------------------------
    def problems(self, candidate: object) -> list[str]:
        """Every reason ``candidate`` is not a valid point, one line each (empty when valid)."""
        if not isinstance(candidate, Mapping):
            return [f"a candidate must be an object with keys {', '.join(self._params)}, got {_show(candidate)}"]
        found = []
        for name, param in self._params.items():
            if name not in candidate:
                found.append(f"{name}: missing (expected {param.describe()})")
                continue
            problem = param.problem(candidate[name])
            if problem:
                found.append(f"{name}: {problem}")
        for name in candidate:
            if name not in self._params:
                found.append(f"{name}: not a parameter of this space (parameters: {', '.join(self._params)})")
        return found

    def validate(self, candidate: object) -> dict[str, ParamValue]:
        """Return ``candidate`` with values in canonical types, or raise :class:`InvalidCandidate`."""
        found = self.problems(candidate)
        if found:
            raise InvalidCandidate(found)
        assert isinstance(candidate, Mapping)
        return {name: param.normalize(candidate[name]) for name, param in self._params.items()}

    def key(self, candidate: Mapping[str, ParamValue]) -> tuple[object, ...]:
        """A hashable identity of a valid candidate, for telling duplicates apart.

        Floats count as equal to 6 significant digits: that is how the history shows them to the model,
        so a model copying a past trial is caught, and no objective tells such neighbours apart anyway.
        """
        return tuple(
            (name, float(f"{float(candidate[name]):.6g}") if isinstance(param, Float) else _choice_key(candidate[name]))  # type: ignore[arg-type]
            for name, param in self._params.items()
        )

    def json_schema(self) -> dict[str, Any]:
        """JSON Schema of one candidate: every parameter required, nothing else allowed."""
        return {
            "type": "object",
            "properties": {name: param.json_schema() for name, param in self._params.items()},
            "required": list(self._params),
            "additionalProperties": False,
        }

    # Serialization --------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The job-file form: ``{"lr": {"type": "float", "low": 1e-5, "high": 0.1, "log": True}, ...}``."""
        out: dict[str, dict[str, Any]] = {}
        for name, param in self._params.items():
            entry = {k: v for k, v in asdict(param).items() if v is not None}  # TOML has no null
            if isinstance(param, Categorical):
                entry["choices"] = list(param.choices)
            out[name] = {"type": param.kind, **entry}
        return out

    @classmethod
    def from_dict(cls, table: Mapping[str, Any]) -> Space:
        """Build a space from its job-file form; errors name the key: ``space.lr.low: ...``.

        Raises:
            SpaceError: every faulty parameter, one problem each, joined by ``"; "``.
        """
        read = SpaceTable.read(table)
        if read.problems:
            raise SpaceError("; ".join(read.problems))
        return cls(read.params)


@dataclass(frozen=True)
class SpaceTable:
    """A job file's ``[space]`` table read as far as it goes, so that one check reports every mistake.

    Attributes:
        names: every parameter the table declares, valid or not: a command placeholder or an enqueued
            value naming a faulty parameter is that parameter's mistake, not a second one.
        params: the parameters whose definitions are valid, in declaration order.
        problems: one line per faulty key (``space.lr.low: ...``); empty when the table is a space.
    """

    names: tuple[str, ...]
    params: dict[str, Param]
    problems: tuple[str, ...]

    @classmethod
    def read(cls, table: object) -> SpaceTable:
        if not isinstance(table, Mapping) or not table:
            expected = 'space: expected a table of parameters, e.g. lr = { type = "float", low = 1e-5, high = 0.1 }'
            return cls((), {}, (expected,))
        params: dict[str, Param] = {}
        problems = []
        for name, entry in table.items():
            where = f"space.{name}" if _NAME_PATTERN.match(name) else f"space.{json.dumps(name)}"
            try:
                _check_name(name)
            except SpaceError as exc:
                problems.append(f"{where}: {exc}")
                continue
            param = _read_param(where, entry)
            if isinstance(param, list):
                problems += param
            else:
                params[name] = param
        return cls(tuple(table), params, tuple(problems))

    @property
    def space(self) -> Space | None:
        """The space, when every parameter is valid."""
        return None if self.problems else Space(self.params)


def _read_param(where: str, entry: object) -> Param | list[str]:
    """The parameter ``entry`` defines, or every problem of it, each naming its key (``space.lr.low: ...``)."""
    if not isinstance(entry, Mapping):
        return [f'{where}: expected a table such as {{ type = "float", low = 0, high = 1 }}']
    kind = entry.get("type")
    if not isinstance(kind, str) or kind not in PARAM_TYPES:
        kinds = ", ".join(f'"{k}"' for k in PARAM_TYPES)
        return [f"{where}.type: expected one of {kinds}, got {_show(kind)}"]
    cls: type[Param] = PARAM_TYPES.get(kind).meta["cls"]
    allowed = [f.name for f in fields(cls)]
    rest = {k: v for k, v in entry.items() if k != "type"}
    problems = [
        f"{where}.{key}: unknown key for a {kind} parameter (allowed: {', '.join(allowed)})"
        for key in rest
        if key not in allowed
    ]
    problems += [
        f"{where}.{f.name}: missing required key for a {kind} parameter"
        for f in fields(cls)
        if f.default is MISSING and f.name not in rest
    ]
    if "log" in rest and not isinstance(rest["log"], bool):
        problems.append(f"{where}.log: expected true or false, got {_show(rest['log'])}")
    for key in ("low", "high"):
        if key in rest and not _is_number(rest[key]):
            problems.append(f"{where}.{key}: expected a number, got {_show(rest[key])}")
        elif key in rest and issubclass(cls, Int) and not isinstance(rest[key], int):
            problems.append(f"{where}.{key}: expected an integer, got {_show(rest[key])}")
    for key in ("step", "max_length"):
        if key in rest and (not isinstance(rest[key], int) or isinstance(rest[key], bool)):
            problems.append(f"{where}.{key}: expected an integer, got {_show(rest[key])}")
    if problems:
        return problems
    try:
        return cls(**rest)
    except SpaceError as exc:
        return [f"{where}: {exc.detail}"]

"""Job files (TOML): parsed and checked completely before anything runs or is written.

Every problem is reported with the TOML key it concerns and what was expected there, all of them at
once, so a user fixes a job file in one pass. The format is DESIGN.md section 1.
"""

from __future__ import annotations

import shutil
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from agent.budget import Budget, parse_duration
from agent.llm import check_model_spec
from agent.proposers import PROPOSER_KINDS
from agent.space import InvalidCandidate, Space, SpaceError
from agent.storage import DEFAULT_STORAGE
from tools.command import BUILTIN_PLACEHOLDERS, CommandEvaluator, placeholders
from tools.evaluation import Evaluator
from tools.function import FunctionEvaluator


class JobFileError(ValueError):
    """A job file that cannot be run. ``problems`` holds one line per faulty key."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))


class _Section(BaseModel):
    # Strict: TOML is typed, so `trials = true` or `seed = "3"` is a mistake to report, not to convert.
    model_config = ConfigDict(extra="forbid", strict=True)


#: Seconds, given as a number or a string such as "30m" (checked by :func:`parse_duration`).
Duration = Annotated[float, BeforeValidator(parse_duration)]


class StudySection(_Section):
    name: str = Field(min_length=1)
    direction: Literal["minimize", "maximize"] = "minimize"
    storage: str = DEFAULT_STORAGE
    seed: int | None = None
    workers: int = Field(default=1, ge=1)
    requeue_interrupted: bool = False


class ObjectiveSection(_Section):
    command: list[str] | None = None
    function: str | None = None
    metric: str | None = None
    timeout: Duration | None = None
    env: dict[str, str] = Field(default_factory=dict)


class Price(_Section):
    input: float = Field(ge=0, description="USD per million prompt tokens")
    output: float = Field(ge=0, description="USD per million completion tokens")


class ProposerSection(_Section):
    kind: str = "auto"
    model: str | None = None
    context: str | None = None
    api_key_env: str | None = None
    prices: dict[str, Price] = Field(default_factory=dict)


class BudgetSection(_Section):
    trials: int | None = Field(default=None, ge=1)
    wall_time: Duration | None = None
    tokens: int | None = Field(default=None, ge=1)
    usd: float | None = Field(default=None, gt=0)


_SECTIONS = ("study", "space", "objective", "proposer", "budget", "enqueue")
_ALL_SECTIONS = "[study], [space], [objective], [proposer], [budget], [[enqueue]]"


@dataclass(frozen=True)
class Job:
    """A checked job file, ready to run."""

    path: Path
    study: StudySection
    space: Space
    objective: ObjectiveSection
    proposer: ProposerSection
    budget: Budget
    enqueue: list[dict[str, Any]]

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def prices(self) -> dict[str, tuple[float, float]]:
        return {model: (price.input, price.output) for model, price in self.proposer.prices.items()}

    @property
    def storage_url(self) -> str:
        """The storage URL, a relative SQLite path taken from the job file's folder."""
        return resolve_storage(self.study.storage, self.folder)

    def evaluator(self) -> Evaluator:
        if self.objective.command is not None:
            return CommandEvaluator(
                self.objective.command,
                timeout=self.objective.timeout,
                cwd=self.folder,
                env=self.objective.env,
            )
        assert self.objective.function is not None
        return FunctionEvaluator(self.objective.function, timeout=self.objective.timeout, base_dir=self.folder)


def resolve_storage(url: str, folder: Path) -> str:
    """Make a relative ``sqlite:///file.db`` absolute against ``folder``; other URLs are kept."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/"):
        return prefix + str((folder / url.removeprefix(prefix)).resolve())
    return url


def _describe(section: str, model: type[_Section], error: Mapping[str, Any]) -> str:
    key = ".".join([section, *(str(p) for p in error["loc"])])
    if error["type"] == "missing":
        return f"{key}: missing required key"
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key (allowed here: {', '.join(model.model_fields)})"
    if error["type"] in ("model_type", "dict_type"):
        return f"{key}: expected a table, got {error['input']!r}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{key}: {message}" + ("" if message.endswith(repr(error["input"])) else f", got {error['input']!r}")


def _section(raw: Mapping[str, Any], name: str, model: type[_Section], problems: list[str]) -> Any:
    table = raw.get(name, {})
    if not isinstance(table, Mapping):
        problems.append(f"{name}: expected a table, e.g. [{name}] on a line of its own, then its keys")
        return None
    try:
        return model.model_validate(table)
    except pydantic.ValidationError as exc:
        problems.extend(_describe(name, model, e) for e in exc.errors())
        return None


def load_job(path: str | Path) -> Job:
    """Read and check a job file; every problem is reported, not only the first.

    Importing a ``function`` objective runs its module's top-level code: that is the only way to know
    the function exists before the study starts.

    Raises:
        JobFileError: the file is missing, not TOML, or has faulty keys (all listed).
    """
    path = Path(path).resolve()
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise JobFileError(path, ["file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise JobFileError(path, [f"cannot read it: {exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise JobFileError(path, [f"not valid TOML: {exc}"]) from None

    problems = [
        f"{key}: unknown section (allowed: {_ALL_SECTIONS})"
        for key in raw
        if key not in {*_SECTIONS, "space", "enqueue"}
    ]
    if "study" not in raw:
        problems.append('study: missing section; add [study] with name = "..."')
    if "objective" not in raw:
        problems.append('objective: missing section; add [objective] with command = [...] or function = "module:fn"')
    # In the order of a job file, so the problems read top to bottom.
    study = _section(raw, "study", StudySection, problems)
    space: Space | None = None
    try:
        space = Space.from_dict(raw.get("space", {}))
    except SpaceError as exc:
        problems.append(str(exc))
    objective = _section(raw, "objective", ObjectiveSection, problems)
    if isinstance(raw.get("objective"), Mapping):  # checked even when another objective key is faulty
        problems += _check_objective(raw["objective"], space, path.parent)
    proposer = _section(raw, "proposer", ProposerSection, problems)
    budget_section = _section(raw, "budget", BudgetSection, problems)
    if proposer is not None:
        problems += _check_proposer(proposer)
    budget = None
    if budget_section is not None:
        if budget_section.trials is None and budget_section.wall_time is None:
            problems.append("budget: set trials or wall_time (or both), e.g. trials = 40")
        else:
            budget = Budget(
                trials=budget_section.trials,
                wall_time=budget_section.wall_time,
                tokens=budget_section.tokens,
                usd=budget_section.usd,
            )
    enqueue = raw.get("enqueue", [])
    if not isinstance(enqueue, list) or not all(isinstance(p, dict) for p in enqueue):
        problems.append("enqueue: expected [[enqueue]] tables, one per point, with a value for each parameter")
    elif space is not None:
        for i, point in enumerate(enqueue):
            try:
                space.validate({**space.defaults(), **point})
            except InvalidCandidate as exc:
                problems += [f"enqueue[{i}].{p}" for p in exc.problems]
    if problems:
        raise JobFileError(path, problems)
    assert study is not None and space is not None and objective is not None
    assert proposer is not None and budget is not None
    return Job(path, study, space, objective, proposer, budget, enqueue)


def _check_proposer(proposer: ProposerSection) -> list[str]:
    if proposer.kind not in PROPOSER_KINDS:
        return [f"proposer.kind: expected one of {', '.join(repr(k) for k in PROPOSER_KINDS)}, got {proposer.kind!r}"]
    if proposer.kind == "llm" and proposer.model is None:
        return ['proposer.model: the "llm" proposer needs a model, e.g. model = "local"']
    if proposer.model is not None:
        try:
            check_model_spec(proposer.model)
        except ValueError as exc:
            return [f"proposer.model: {exc}"]
    return []


def _check_objective(table: Mapping[str, Any], space: Space | None, folder: Path) -> list[str]:
    """What the schema cannot see: one of command/function, placeholders, the program, the import."""
    command, function = table.get("command"), table.get("function")
    if (command is None) == (function is None):
        return ['objective: set exactly one of command = ["python", "train.py", "{lr}"] or function = "module:fn"']
    if command == []:
        return ['objective.command: must not be empty, e.g. ["python", "train.py", "--lr", "{lr}"]']
    if isinstance(command, list) and all(isinstance(item, str) for item in command):
        return _check_command(command, space, folder)
    if isinstance(function, str):
        try:
            FunctionEvaluator(function, base_dir=folder)
        except ValueError as exc:
            return [f"objective.function: {exc}"]
    return []


def _check_command(argv: list[str], space: Space | None, folder: Path) -> list[str]:
    problems = []
    known = [*(space or {}), *BUILTIN_PLACEHOLDERS]
    for i, item in enumerate(argv):
        try:
            names = placeholders([item])
        except ValueError as exc:
            problems.append(f"objective.command[{i}]: not a valid template ({exc}); write {{{{ for a literal {{")
            continue
        for name in names:
            if space is not None and name not in known:
                problems.append(
                    f"objective.command[{i}]: placeholder {{{name}}} is not a parameter (known: {', '.join(known)})"
                )
    program = argv[0]
    if "{" not in program and shutil.which(program) is None and not (folder / program).exists():
        problems.append(f"objective.command[0]: program {program!r} not found on PATH or in {folder}")
    return problems

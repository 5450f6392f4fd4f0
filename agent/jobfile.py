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
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from agent.budget import Budget, parse_duration
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
    model_config = ConfigDict(extra="forbid", strict=False)


Duration = float | int | str


class StudySection(_Section):
    name: str = Field(min_length=1)
    direction: Literal["minimize", "maximize"] = "minimize"
    storage: str = DEFAULT_STORAGE
    seed: int | None = None
    workers: int = Field(default=1, ge=1)
    requeue_interrupted: bool = False


class ObjectiveSection(_Section):
    command: list[str] | None = Field(default=None, min_length=1)
    function: str | None = None
    metric: str | None = None
    timeout: Duration | None = None
    env: dict[str, str] = Field(default_factory=dict)


class ProposerSection(_Section):
    kind: str = "random"
    context: str | None = None


class BudgetSection(_Section):
    trials: int | None = Field(default=None, ge=1)
    wall_time: Duration | None = None


class _JobModel(_Section):
    study: StudySection
    space: dict[str, Any]
    objective: ObjectiveSection
    proposer: ProposerSection = Field(default_factory=ProposerSection)
    budget: BudgetSection = Field(default_factory=BudgetSection)
    enqueue: list[dict[str, Any]] = Field(default_factory=list)


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
    def storage_url(self) -> str:
        """The storage URL, a relative SQLite path taken from the job file's folder."""
        return resolve_storage(self.study.storage, self.folder)

    def evaluator(self) -> Evaluator:
        if self.objective.command is not None:
            return CommandEvaluator(
                self.objective.command, timeout=self.objective.timeout, cwd=self.folder, env=self.objective.env
            )
        assert self.objective.function is not None
        return FunctionEvaluator(self.objective.function, timeout=self.objective.timeout, base_dir=self.folder)


def resolve_storage(url: str, folder: Path) -> str:
    """Make a relative ``sqlite:///file.db`` absolute against ``folder``; other URLs are kept."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/"):
        return prefix + str((folder / url.removeprefix(prefix)).resolve())
    return url


def _key(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _describe(error: Mapping[str, Any], model: type[BaseModel]) -> str:
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith(("function-", "lax-"))))
    key = _key(loc)
    if error["type"] == "missing":
        return f"{key}: missing required key"
    if error["type"] == "extra_forbidden":
        section: Any = model
        for part in loc[:-1]:
            field = section.model_fields.get(part) if isinstance(part, str) else None
            section = field.annotation if field is not None else None
        allowed = ", ".join(section.model_fields) if isinstance(section, type) else "see DESIGN.md"
        return f"{key}: unknown key (allowed here: {allowed})"
    return f"{key}: {error['msg']}, got {error['input']!r}"


def load_job(path: str | Path) -> Job:
    """Read and check a job file.

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
    try:
        model = _JobModel.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise JobFileError(path, [_describe(e, _JobModel) for e in exc.errors()]) from None

    problems: list[str] = []
    space: Space | None = None
    try:
        space = Space.from_dict(model.space)
    except SpaceError as exc:
        problems.append(str(exc))
    problems += _check_objective(model.objective, space, path.parent)
    if model.proposer.kind not in PROPOSER_KINDS:
        problems.append(
            f"proposer.kind: expected one of {', '.join(repr(k) for k in PROPOSER_KINDS)}, got {model.proposer.kind!r}"
        )
    budget = None
    try:
        budget = Budget(trials=model.budget.trials, wall_time=model.budget.wall_time)
    except ValueError as exc:
        problems.append(f"budget.wall_time: {exc}")
    if budget is not None and budget.trials is None and budget.wall_time is None:
        problems.append("budget: set trials or wall_time (or both), e.g. trials = 40")
    if space is not None:
        for i, point in enumerate(model.enqueue):
            try:
                space.validate({**space.defaults(), **point})
            except InvalidCandidate as exc:
                problems += [f"enqueue[{i}].{p}" for p in exc.problems]
    if problems:
        raise JobFileError(path, problems)
    assert space is not None and budget is not None
    return Job(path, model.study, space, model.objective, model.proposer, budget, model.enqueue)


def _check_objective(objective: ObjectiveSection, space: Space | None, folder: Path) -> list[str]:
    if (objective.command is None) == (objective.function is None):
        return ['objective: set exactly one of command = ["python", "train.py", "{lr}"] or function = "module:fn"']
    problems = []
    if objective.timeout is not None:
        try:
            parse_duration(objective.timeout)
        except ValueError as exc:
            problems.append(f"objective.timeout: {exc}")
    if objective.command is not None:
        problems += _check_command(objective.command, space, folder)
    elif objective.function is not None:
        try:
            FunctionEvaluator(objective.function, base_dir=folder)
        except ValueError as exc:
            problems.append(f"objective.function: {exc}")
    return problems


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
                    f"objective.command[{i}]: placeholder {{{name}}} is not a parameter "
                    f"(known: {', '.join(known)})"
                )
    program = argv[0]
    if "{" not in program and shutil.which(program) is None and not (folder / program).exists():
        problems.append(f"objective.command[0]: program {program!r} not found on PATH or in {folder}")
    return problems


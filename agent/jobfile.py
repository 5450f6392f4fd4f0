"""Job files (TOML): parsed and checked completely before anything runs or is written.

Every problem is reported with the TOML key it concerns and what was expected there, all of them at
once, so a user fixes a job file in one pass: a faulty parameter does not hide the command's placeholders
or the ``[[enqueue]]`` points (they are checked against the names and the valid parameters), and a model
that cannot start on this machine (its API key not set, its file or wheel missing) is found here rather
than at the study's first proposal.

Paths are taken from the job file's folder, wherever ``tunesmith`` runs: the program and the modules of
the objective, a relative ``storage = "sqlite:///x.db"``, and the default storage, ``tunesmith.db`` there.

The settings themselves are defined once, in :mod:`agent.config`; a job file is a layout over them
(:data:`LAYOUT` says where each key of ``[study]``, ``[objective]``, ``[proposer]`` and ``[budget]`` goes),
so a setting added there is a job-file key here by one line. The other keys of ``[proposer]`` are the
chosen proposer's options, checked by its options model; the ``[objective]`` table holds one objective
kind (``command = [...]`` or ``function = "module:fn"``, see :mod:`tools.registry`) and its options.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
from pydantic import BaseModel

from agent.budget import Budget
from agent.config import Price, StudyConfig, config_problems
from agent.errors import ConfigError, TunesmithError
from agent.files import MIB, FileRefused, read_bounded
from agent.llm.spec import ModelSpec, model_problems, resolve_model_path
from agent.proposers import PROPOSERS, space_problem, uses_model
from agent.space import Space, SpaceTable
from agent.storage import DEFAULT_STORAGE
from tools.evaluation import Evaluator
from tools.registry import EVALUATORS, EvaluatorContext, choose_one, kinds_in


class JobFileError(TunesmithError, ValueError):
    """A job file that cannot be run. ``problems`` holds one line per faulty key."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))


#: Where each job-file key goes in a :class:`~agent.config.StudyConfig`, by table, in the order shown to users.
LAYOUT: dict[str, dict[str, tuple[str, ...]]] = {
    "study": {
        "name": ("name",),
        "direction": ("direction",),
        "storage": ("storage",),
        "seed": ("search", "seed"),
        "workers": ("workers",),
        "executor": ("executor",),
        "requeue_interrupted": ("requeue_interrupted",),
    },
    "objective": {"metric": ("metric",)},
    "proposer": {
        "kind": ("search", "proposer"),
        "model": ("search", "model"),
        "context": ("search", "context"),
        "api_key_env": ("search", "api_key_env"),
        "prices": ("search", "prices"),
    },
    "budget": {
        "trials": ("budget", "trials"),
        "wall_time": ("budget", "wall_time"),
        "tokens": ("budget", "tokens"),
        "usd": ("budget", "usd"),
        "model_calls": ("budget", "model_calls"),
    },
}
#: A job file is a page of settings; what is larger is not one (``/dev/zero`` would never end).
JOB_FILE_LIMIT = 4 * MIB
_SECTIONS = ("study", "space", "objective", "proposer", "budget", "enqueue")
_ALL_SECTIONS = "[study], [space], [objective], [proposer], [budget], [[enqueue]]"


@dataclass(frozen=True)
class ObjectiveConfig:
    """The ``[objective]`` table, checked: its kind, that kind's options, and the target metric."""

    kind: str
    options: BaseModel
    metric: str | None = None
    direction: str | None = None
    model: str | None = None

    def evaluator(self, folder: Path | None = None, space: Space | None = None) -> Evaluator:
        context = EvaluatorContext(folder, space, self.metric, direction=self.direction, model=self.model)
        return EVALUATORS.build(self.kind, self.options, context, where="objective")

    @property
    def identity(self) -> str:
        """What is evaluated, in one line (``command = ["python", "train.py", "{lr}"]``), stored with the study
        so that a job file that reuses a study's name for another objective is noticed. Limits such as
        ``timeout`` are not part of it: changing them evaluates the same thing."""
        options = self.options.model_dump(mode="json")
        what = options.get(self.kind, options)
        return f"{self.kind} = {json.dumps(what)}"


@dataclass(frozen=True)
class StudySection:
    """The ``[study]`` table as 0.x callers read it (``job.study.name``); new code reads :attr:`Job.config`."""

    name: str
    direction: str
    storage: str
    seed: int | None
    workers: int
    requeue_interrupted: bool


@dataclass(frozen=True)
class ProposerSection:
    """The ``[proposer]`` table as 0.x callers read it (``job.proposer.model``); new code reads :attr:`Job.config`."""

    kind: str
    model: str | None
    context: str | None
    api_key_env: str | None
    prices: dict[str, Price]
    options: dict[str, Any]


@dataclass(frozen=True)
class Job:
    """A checked job file, ready to run.

    Attributes:
        path: the file.
        config: every setting (the storage URL made absolute against the file's folder; ``tunesmith.db``
            there when the file names none).
        space: the ``[space]`` table.
        objective: the ``[objective]`` table.
        enqueue: the ``[[enqueue]]`` points.
    """

    path: Path
    config: StudyConfig
    space: Space
    objective: ObjectiveConfig
    enqueue: list[dict[str, Any]]

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def storage_url(self) -> str:
        """The storage URL, a relative SQLite path taken from the job file's folder."""
        return self.config.storage

    @property
    def budget(self) -> Budget:
        """The job's limits; none when it sets none (loaded with ``require_budget=False``: the caller sets them)."""
        return self.config.budget.to_budget() or Budget()

    @property
    def prices(self) -> dict[str, tuple[float, float]]:
        return self.config.search.price_table()

    @property
    def study(self) -> StudySection:
        c = self.config
        return StudySection(c.name, c.direction, c.storage, c.search.seed, c.workers, c.requeue_interrupted)

    @property
    def proposer(self) -> ProposerSection:
        s = self.config.search
        model = None if s.model is None else str(s.model)
        return ProposerSection(s.proposer, model, s.context, s.api_key_env, dict(s.prices), dict(s.proposer_options))

    def evaluator(self) -> Evaluator:
        return self.objective.evaluator(self.folder, self.space)


def resolve_storage(url: str, folder: Path) -> str:
    """Make a relative ``sqlite:///file.db`` absolute against ``folder``; other URLs are kept."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/"):
        return prefix + str((folder / url.removeprefix(prefix)).resolve())
    return url


def _toml_key(loc: Sequence[str | int]) -> tuple[str, str]:
    """The table and the dotted TOML key of a StudyConfig location."""
    loc = tuple(loc)
    for section, keys in LAYOUT.items():
        for key, path in keys.items():
            if loc[: len(path)] == path:
                return section, ".".join([section, key, *(str(p) for p in loc[len(path) :])])
    if loc[:2] == ("search", "proposer_options"):
        return "proposer", ".".join(["proposer", *(str(p) for p in loc[2:])])
    return "study", ".".join(str(p) for p in loc)


def _unknown(section: str, key: str, allowed: Sequence[str]) -> str:
    return f"{section}.{key}: unknown key (allowed here: {', '.join(allowed)})"


def load_job(path: str | Path, *, require_budget: bool = True) -> Job:
    """Read and check a job file; every problem is reported, not only the first.

    Importing a ``function`` objective runs its module's top-level code: that is the only way to know
    the function exists before the study starts.

    Args:
        path: the job file.
        require_budget: refuse a job that sets neither ``trials`` nor ``wall_time``; False for a caller
            that limits the run itself (``tunesmith run --trials 5``).

    Raises:
        JobFileError: the file is missing, not TOML, or has faulty keys (all listed).
    """
    path = Path(path).resolve()
    try:
        raw = tomllib.loads(read_bounded(path, JOB_FILE_LIMIT).decode())
    except FileNotFoundError:
        raise JobFileError(path, ["file not found"]) from None
    except (OSError, UnicodeDecodeError, FileRefused) as exc:
        raise JobFileError(path, [f"cannot read it: {exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise JobFileError(path, [f"not valid TOML: {exc}"]) from None

    head = [f"{key}: unknown section (allowed: {_ALL_SECTIONS})" for key in raw if key not in _SECTIONS]
    if "study" not in raw:
        head.append('study: missing section; add [study] with name = "..."')
    if "objective" not in raw:
        head.append('objective: missing section; add [objective] with command = [...] or function = "module:fn"')
    # Problems by table, reported in the order of a job file so that they read top to bottom.
    found: dict[str, list[str]] = {section: [] for section in _SECTIONS}
    tables: dict[str, Mapping[str, Any] | None] = {}
    for section in ("study", "objective", "proposer", "budget"):
        table = raw.get(section, {})
        if isinstance(table, Mapping):
            tables[section] = table
        else:
            tables[section] = None
            found[section].append(f"{section}: expected a table, e.g. [{section}] on a line of its own, then its keys")

    space_raw, found["space"] = with_code_from_files(raw.get("space", {}), path.parent)
    space_table = SpaceTable.read(space_raw)
    found["space"] += space_table.problems
    space = space_table.space

    # The settings: each layout key to its StudyConfig place; other [study]/[budget] keys are unknown.
    data: dict[str, Any] = {"search": {}, "budget": {}}
    rest: dict[str, dict[str, Any]] = {"objective": {}, "proposer": {}}
    for section, keys in LAYOUT.items():
        for key, value in (tables[section] or {}).items():
            if key in keys:
                target = data
                *parents, last = keys[key]
                for parent in parents:
                    target = target[parent]
                target[last] = value
            elif section in rest:
                rest[section][key] = value
            else:
                found[section].append(_unknown(section, key, list(keys)))
    # The other [proposer] keys are the kind's options; with an unknown kind there is nothing to check them by.
    kind = data["search"].get("proposer", "auto")
    data["search"]["proposer_options"] = rest["proposer"] if kind in PROPOSERS else {}
    storage = data.setdefault("storage", DEFAULT_STORAGE)
    if isinstance(storage, str):
        data["storage"] = resolve_storage(storage, path.parent)
    if isinstance(model := data["search"].get("model"), str):  # gguf:models/m.gguf is beside the job file too
        data["search"]["model"] = resolve_model_path(model, path.parent)
    config: StudyConfig | None = None
    setting_problems: dict[str, list[str]] = {section: [] for section in _SECTIONS}
    try:
        config = StudyConfig.model_validate(data, strict=True)
    except pydantic.ValidationError as exc:
        option_keys = _option_keys(kind)
        for error, line in zip(
            exc.errors(),
            config_problems(
                exc,
                lambda loc: _toml_key(loc)[1],
                lambda loc: option_keys if loc[:2] == ("search", "proposer_options") else None,
            ),
            strict=True,
        ):
            setting_problems[_toml_key(tuple(error["loc"]))[0]].append(line)
    for section in ("study", "proposer", "budget"):
        found[section] += setting_problems[section]
    if config is not None and config.search.model is not None and config.search.model.is_object:
        found["proposer"].append(
            f"proposer.model: {str(config.search.model)!r} is how a study records a client object, which a job "
            'file cannot pass; name a model such as "local"'
        )
    found["proposer"] += _model_readiness(data["search"])
    if space is not None and isinstance(kind, str) and (problem := space_problem(kind, space)) is not None:
        found["proposer"].append(f"proposer.kind: {problem}")

    objective: ObjectiveConfig | None = None
    if "objective" in raw and tables["objective"] is not None:
        study_table = tables["study"] or {}
        context = EvaluatorContext(
            path.parent,
            space,
            metric=_text_or_none(tables["objective"].get("metric")),
            parameters=space_table.names or None,
            direction=_text_or_none(study_table.get("direction", "minimize")),
            model=_text_or_none((tables["proposer"] or {}).get("model")),
        )
        objective = _objective(rest["objective"], setting_problems["objective"], context, found["objective"])
        if objective is not None and config is not None:
            model = None if config.search.model is None else str(config.search.model)
            objective = ObjectiveConfig(objective.kind, objective.options, config.metric, config.direction, model)
    else:
        found["objective"] += setting_problems["objective"]

    budget_table = tables["budget"]
    if (
        require_budget
        and budget_table is not None
        and not found["budget"]
        and "trials" not in budget_table
        and "wall_time" not in budget_table
    ):
        found["budget"].append("budget: set trials or wall_time (or both), e.g. trials = 40")

    enqueue = raw.get("enqueue", [])
    if not isinstance(enqueue, list) or not all(isinstance(p, dict) for p in enqueue):
        found["enqueue"].append("enqueue: expected [[enqueue]] tables, one per point, with a value for each parameter")
    elif space_table.params:
        # Checked against the valid parameters; a value of a faulty one is that parameter's mistake.
        valid = Space(space_table.params)
        for i, point in enumerate(enqueue):
            checked = {k: v for k, v in point.items() if k in valid or k not in space_table.names}
            found["enqueue"] += [f"enqueue[{i}].{p}" for p in valid.problems({**valid.defaults(), **checked})]

    problems = head + [line for section in _SECTIONS for line in found[section]]
    if problems:
        raise JobFileError(path, problems)
    assert config is not None and space is not None and objective is not None
    return Job(path, config, space, objective, enqueue)


def with_code_from_files(table: object, folder: Path) -> tuple[object, list[str]]:
    """The ``[space]`` table with each ``{ type = "code", file = ..., region = ... }`` given its ``default``: the
    code the file (or its marked region) holds now, read from the job file's folder."""
    from agent.evolution.regions import CodeLocation, RegionError, read_location

    if not isinstance(table, Mapping):
        return table, []
    filled: dict[str, Any] = dict(table)
    problems = []
    for name, entry in table.items():
        if not (isinstance(entry, Mapping) and isinstance(entry.get("file"), str) and "default" not in entry):
            continue
        region = entry.get("region")
        if region is not None and not isinstance(region, str):
            continue  # the parameter's own check reports it
        try:
            filled[name] = {**entry, "default": read_location(folder, CodeLocation(entry["file"], region))}
        except (OSError, RegionError) as exc:
            problems.append(f"space.{name}.file: {exc}")
            filled[name] = {**entry, "default": ""}  # one problem for this parameter, not a second "no default"
    return filled, problems


def _option_keys(kind: object) -> list[str]:
    """What a ``[proposer]`` table may hold for proposer ``kind``: the settings, then the kind's options."""
    options = PROPOSERS.options_model(str(kind)) if kind in PROPOSERS else None
    return [*LAYOUT["proposer"], *(options.model_fields if options is not None else ())]


def _model_readiness(search: Mapping[str, Any]) -> list[str]:
    """What keeps the model from starting here, for a proposer that uses one; a spec or setting that is
    faulty itself is reported by the settings check instead."""
    kind, model, api_key_env = search.get("proposer", "auto"), search.get("model"), search.get("api_key_env")
    if not (isinstance(kind, str) and kind in PROPOSERS and uses_model(kind)) or not isinstance(model, str):
        return []
    if api_key_env is not None and not isinstance(api_key_env, str):
        return []
    try:
        spec = ModelSpec.parse(model)
    except ConfigError:
        return []
    return [f"proposer.model: {problem}" for problem in model_problems(spec, api_key_env)]


def _text_or_none(value: object) -> str | None:
    """A setting as the objective's checks may read it: a faulty one is reported elsewhere, and read as unset."""
    return value if isinstance(value, str) else None


def _objective(
    table: Mapping[str, Any], metric_problems: list[str], context: EvaluatorContext, found: list[str]
) -> ObjectiveConfig | None:
    """Check the ``[objective]`` table but ``metric``: one kind, its options, and the kind's own checks."""
    every = [*EVALUATORS.names(), *LAYOUT["objective"]]
    for entry in EVALUATORS.entries():
        every += [key for key in (entry.options.model_fields if entry.options else ()) if key not in every]
    found += [_unknown("objective", key, every) for key in table if key not in every]
    found += metric_problems
    kinds = kinds_in(table)
    if len(kinds) != 1:
        found.append(f"objective: {choose_one()}")
        return None
    kind = kinds[0]
    model = EVALUATORS.options_model(kind)
    own = list(model.model_fields) if model is not None else list(table)
    for key in table:
        if key in every and key not in own:
            found.append(f"objective.{key}: not used by a {kind} objective (its keys: {', '.join(own)})")
    options = {key: value for key, value in table.items() if key in own}
    problems = EVALUATORS.problems(kind, options, context, where="objective")
    found += problems
    if problems or model is None:
        return None
    return ObjectiveConfig(kind, model.model_validate(options, strict=True))

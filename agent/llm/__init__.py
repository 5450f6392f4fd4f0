"""Model backends (DESIGN.md section 4): one protocol, several ways to reach a model.

``make_client`` turns the ``model=`` setting of a study into a client:

* ``"local"`` — SmolLM2-135M in an in-process llama.cpp server (:mod:`agent.llm.local`)
* ``"gguf:/path/model.gguf"`` — any GGUF file, same server
* ``"openai:gpt-4o-mini"`` — OpenAI, key from ``OPENAI_API_KEY`` (or ``api_key_env``)
* ``"http://host:8000/v1#qwen2.5-7b"`` — any OpenAI-compatible server
* ``"hf:/path/to/model"`` — transformers with grammar-constrained decoding (:mod:`agent.llm.transformers`)
* ``"replay:STUDY"`` — the recorded replies of another study in the same storage
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from agent.llm.client import Completion, LLMClient, LLMError, Message, extract_json

if TYPE_CHECKING:
    from agent.storage import Storage

MODEL_FORMS = (
    '"local", "gguf:/path/model.gguf", "openai:<model>", "http://host:port/v1#<model>", "hf:/path", "replay:<study>"'
)


def is_local_spec(spec: str | None) -> bool:
    """Models that run on this machine (or replay a record), whose calls cost no money."""
    return spec is not None and (spec == "local" or spec.startswith(("gguf:", "hf:", "replay:")))


def check_model_spec(spec: str) -> None:
    """Raise ValueError, naming the accepted forms, when ``spec`` is none of them (nothing is started)."""
    if spec == "local" or spec.startswith(("gguf:", "openai:", "hf:", "replay:")):
        if spec != "local" and not spec.split(":", 1)[1]:
            raise ValueError(f"model {spec!r} names nothing after the colon; expected one of {MODEL_FORMS}")
        return
    if spec.startswith(("http://", "https://")) and "#" in spec and spec.rsplit("#", 1)[1]:
        return
    raise ValueError(f"model {spec!r} is not understood; expected one of {MODEL_FORMS}")


def make_client(spec: str, storage: Storage | None = None, api_key_env: str | None = None) -> LLMClient:
    """Build the client a ``model=`` setting names; backends load lazily, only when used.

    Raises:
        ValueError: the spec is none of the accepted forms.
        LLMError: the backend cannot start (missing package or model file; the message says what to install).
    """
    check_model_spec(spec)
    if spec == "local":
        from agent.llm.local import local_client

        return local_client()
    kind, _, rest = spec.partition(":")
    if kind == "gguf":
        from agent.llm.local import local_client

        return local_client(Path(rest))
    if kind == "hf":
        from agent.llm.transformers import TransformersClient

        return TransformersClient(rest)
    if kind == "replay":
        from agent.llm.replay import ReplayClient

        if storage is None:
            raise ValueError("replay needs the storage that holds the recorded study")
        return ReplayClient(storage, rest)
    from agent.llm.openai import client_from_spec

    if kind == "openai":
        return client_from_spec(spec, api_key_env=api_key_env or "OPENAI_API_KEY")
    if api_key_env is None:
        # Another server gets a key only when the job names the variable: OPENAI_API_KEY must not be sent
        # to whatever URL a job file points at.
        return client_from_spec(spec, api_key="unused")
    return client_from_spec(spec, api_key_env=api_key_env)


__all__ = [
    "MODEL_FORMS",
    "Completion",
    "LLMClient",
    "LLMError",
    "Message",
    "check_model_spec",
    "extract_json",
    "make_client",
]

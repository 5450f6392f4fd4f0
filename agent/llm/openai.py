"""The OpenAI backend: the official ``openai`` SDK, for OpenAI and every OpenAI-compatible server.

vLLM, Ollama, llama.cpp's server, SGLang and LM Studio all speak the chat-completions protocol, so one
client covers hosted and local models (the embedded local default is served through this client too).
What differs between servers is how much of the protocol they honour, so this client degrades instead
of failing:

* Structured output: ``response_format`` ``json_schema`` (strict) first; a server that refuses it gets
  ``json_object`` with the schema described in the system message, then plain text from which the JSON is
  extracted. The mode that worked is remembered per client, so a server is probed once, not every call.
* Transient failures (429, 5xx, timeouts, dropped connections, a 200 whose body is not a completion) are
  retried with tenacity: Retry-After honoured when the server sends it, exponential backoff with jitter
  otherwise, bounded by ``max_attempts`` and ``max_total_s``. The SDK's own retries are off so that there
  is one retry policy, and one count of requests for the transcript.
* Time: a call ends by its limit (``max_total_s``, or the caller's ``timeout_s`` when smaller) whatever the
  server does - a server that trickles its reply a byte at a time included: the SDK's HTTP client is one
  whose requests end by their deadline (:mod:`agent.llm.http`), and no retry starts that would end past it.
* A reply that arrives but is not valid JSON is *returned* (``parse_error`` set): the proposer repairs it
  with one more turn; only "no reply at all" raises :class:`LLMError`, and then the proposer falls back.
* Tools: ``complete(..., tools=[...])`` offers functions the model may call (what ``tunesmith chat`` does);
  the reply's text and calls come back parsed as ``{"reply": ..., "actions": [{"name", "arguments"}]}``,
  the shape a backend without tool calling is asked to write as JSON, so callers handle one shape.

API keys: taken from the argument or the environment, handed to the SDK and nowhere else - not kept on
this object, not in its repr. The key, and the password of a ``user:password@`` base URL, are registered as
secrets (:mod:`agent.secrets`), so they are scrubbed from error messages, logs, storage and prompts,
wherever they turn up (a server that echoes the request's headers).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from agent.llm.client import Completion, LLMError, Message, display_url, estimate_tokens, extract_json
from agent.secrets import redact, register, register_url_credentials

if TYPE_CHECKING:
    from openai import OpenAI
    from openai.types.chat import ChatCompletion
    from tenacity import RetryCallState

__all__ = ["OpenAIClient", "client_from_spec"]

log = logging.getLogger(__name__)

#: Structured-output modes, most to least reliable; a client starts at the last one that worked.
MODES: tuple[str, ...] = ("json_schema", "json_object", "text")

#: Replies longer than this are only parsed whole, never scanned for embedded JSON: ``extract_json`` tries
#: ``raw_decode`` at every ``[``/``{`` and each failure costs O(n), so a pathological megabyte of braces
#: would take minutes. Real replies (``max_tokens`` of a few thousand) are far below this.
MAX_SCAN_CHARS = 65_536

#: Words in an error that mean "this server does not do that response_format" rather than "bad request".
_FORMAT_WORDS = ("response_format", "json_schema", "json_object", "structured output", "grammar")

#: The key sent to a server that checks none: the SDK wants one. A placeholder, never registered as a secret
#: (every "unused" in a log would be scrubbed).
NO_KEY = "unused"

_SPEC_FORMS = "'openai:<model>' (the OpenAI API) or 'http(s)://host:port/v1#<model>' (an OpenAI-compatible server)"


class _BadResponse(Exception):
    """HTTP 200 whose body is not a chat completion: a proxy's error page, a server dying mid-write.

    Retried like a 5xx: the request was fine and no model output was lost, so asking again is safe.
    """


class _Failure(Exception):
    """The last error of a request that was given up on, with the number of requests made for it."""

    def __init__(self, error: BaseException, attempts: int, gave_up_waiting: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.attempts = attempts
        self.gave_up_waiting = gave_up_waiting


class OpenAIClient:
    """An :class:`~agent.llm.client.LLMClient` over the chat-completions API.

    Args:
        model: the model name the server knows (``"gpt-4o-mini"``, ``"qwen2.5-7b"``).
        base_url: the server's ``.../v1`` URL; None for the OpenAI API.
        api_key: the key; else the environment variable ``api_key_env`` (default ``OPENAI_API_KEY``); else,
            for a server other than OpenAI's, a placeholder (local servers check none). A variable named
            explicitly but unset is warned about: a server that needs the key will answer 401.
        timeout_s: limit of one HTTP request, from connecting to the last byte of the reply.
        max_attempts: requests per structured-output mode before giving up (1 = no retry).
        max_total_s: limit of one ``complete`` call, retries and waits included: no retry starts (and no
            Retry-After wait is begun) that would end past it, and each request's timeout is cut to fit.
        max_retry_after_s: a server's Retry-After is honoured up to this many seconds.
        backoff_s, max_backoff_s: exponential backoff with full jitter when the server gives no
            Retry-After: the n-th wait is uniform in ``[0, min(max_backoff_s, backoff_s * 2**n)]``.

    Raises:
        LLMError: no key for the OpenAI API (the message names the variable to set).
        ValueError: nonsensical limits.
    """

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        api_key_env: str | None = None,
        timeout_s: float = 60,
        max_attempts: int = 4,
        max_total_s: float = 120,
        max_retry_after_s: float = 30,
        backoff_s: float = 0.5,
        max_backoff_s: float = 10,
    ) -> None:
        if not model:
            raise ValueError("model must be a non-empty name")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        for name, value in (("timeout_s", timeout_s), ("max_total_s", max_total_s)):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if max_retry_after_s < 0 or backoff_s < 0 or max_backoff_s < 0:
            raise ValueError("max_retry_after_s, backoff_s and max_backoff_s must be >= 0")

        self.model = model
        self.base_url = base_url
        self.timeout_s = float(timeout_s)
        self.max_attempts = int(max_attempts)
        self.max_total_s = float(max_total_s)
        self.max_retry_after_s = float(max_retry_after_s)
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self._where = display_url(base_url) if base_url else "the OpenAI API"
        self._mode_lock = threading.Lock()
        self._start_mode = 0

        variable = api_key_env or "OPENAI_API_KEY"
        key = api_key or os.environ.get(variable) or None
        if key is None:
            if _is_official(base_url):
                raise LLMError(
                    f"no API key for the OpenAI API: set the environment variable {variable} (or pass api_key=...)"
                )
            if api_key_env is not None:
                log.warning(
                    "the environment variable %s (api_key_env) is not set: requests to %s carry no API key",
                    api_key_env,
                    self._where,
                )
            key = NO_KEY
        elif key != NO_KEY:
            register(key)
        if base_url:
            register_url_credentials(base_url)

        import openai  # lazy: `import agent` must not pay for the SDK and its HTTP stack

        from agent.llm.http import bounded_http_client

        # max_retries=0: tenacity below is the one retry policy (and counts the requests).
        self._client: OpenAI = openai.OpenAI(
            api_key=key,
            base_url=base_url,
            timeout=self.timeout_s,
            max_retries=0,
            http_client=bounded_http_client(base_url),
        )

    #: Whether ``complete`` takes ``tools`` (OpenAI-style function calling).
    supports_tools = True

    def __repr__(self) -> str:
        where = f", base_url={self._where!r}" if self.base_url else ""
        return f"OpenAIClient(model={self.model!r}{where}, api_key=<hidden>)"

    __str__ = __repr__

    @property
    def mode(self) -> str:
        """The structured-output mode the next call with a schema starts in."""
        return MODES[self._start_mode]

    # The protocol ----------------------------------------------------------------------------------------

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
        """One chat completion; with ``schema``, the reply's JSON in ``parsed`` (or why not in ``parse_error``).

        ``timeout_s`` is the most this call may take (a run's remaining wall time); the call ends by the
        smaller of it and ``max_total_s``. ``tools`` (``{"name", "description", "parameters"}`` each, with no
        ``schema``) are offered as functions; ``parsed`` is then ``{"reply": text, "actions": [{"name": ...,
        "arguments": {...}}]}``, arguments that are not a JSON object kept as the string sent.

        Raises:
            LLMError: no reply could be had: retries or time exhausted, the server gone, a request the
                server refuses in every mode. ``attempts`` counts every HTTP request made.
        """
        start = time.monotonic()
        limit = self.max_total_s if timeout_s is None else min(self.max_total_s, timeout_s)
        deadline = start + limit
        attempts = 0
        refusals: list[str] = []
        if tools is not None and schema is not None:
            raise ValueError("complete takes a schema or tools, not both")
        modes = MODES[self._start_mode :] if schema is not None else ("tools",) if tools is not None else ("text",)
        for mode in modes:
            if refusals and time.monotonic() >= deadline:
                break
            request = self._request(messages, schema, mode, temperature, max_tokens)
            if tools is not None:
                request["tools"] = [{"type": "function", "function": dict(tool)} for tool in tools]
            try:
                response, n = self._send(request, mode, deadline)
            except _Failure as failure:
                attempts += failure.attempts
                if mode in MODES[:2] and _is_format_refusal(failure.error):
                    refusals.append(f"{mode}: {self._describe(failure.error)}")
                    log.warning(
                        "%s answered %s to response_format %s; trying the next mode",
                        self._where,
                        self._describe(failure.error),
                        mode,
                    )
                    continue
                raise self._give_up(failure, attempts, start, limit, refusals) from None
            attempts += n
            if schema is not None:
                self._remember(mode)
            return self._completion(response, mode, schema, messages, max_tokens, attempts, start)
        raise LLMError(  # only reached when the time ran out between fallbacks
            f"{self.model} at {self._where}: no structured-output mode left within {limit:g}s ({'; '.join(refusals)})",
            attempts=attempts,
        )

    # Requests --------------------------------------------------------------------------------------------

    def _request(
        self,
        messages: Sequence[Message],
        schema: Mapping[str, Any] | None,
        mode: str,
        temperature: float,
        max_tokens: int,
    ) -> dict[str, Any]:
        """The keyword arguments of ``chat.completions.create`` for ``mode``."""
        msgs = [dict(m) for m in messages]
        # OpenAI itself replaced max_tokens by max_completion_tokens (its reasoning models refuse the old name);
        # other servers (vLLM, llama.cpp, Ollama...) know max_tokens.
        limit = "max_completion_tokens" if _is_official(self.base_url) else "max_tokens"
        request: dict[str, Any] = {"model": self.model, "temperature": temperature, limit: max_tokens}
        if schema is not None and mode == "json_schema":
            request["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "candidates", "schema": dict(schema), "strict": True},
            }
        elif schema is not None:
            if mode == "json_object":
                request["response_format"] = {"type": "json_object"}
            msgs = _with_schema_instruction(msgs, schema)
        request["messages"] = msgs
        return request

    def _send(self, request: dict[str, Any], mode: str, deadline: float) -> tuple[ChatCompletion, int]:
        """POST ``request`` with retries; the response and the number of requests it took.

        Raises:
            _Failure: the last error, once it is not transient or the attempts or the time are spent.
        """
        import openai
        from tenacity import Retrying, retry_if_exception, wait_random_exponential

        count = 0
        backoff = wait_random_exponential(multiplier=self.backoff_s, max=self.max_backoff_s)

        def attempt() -> ChatCompletion:
            nonlocal count
            count += 1
            timeout = max(0.05, min(self.timeout_s, deadline - time.monotonic()))
            return self._post(request, timeout)

        def wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome is not None else None
            asked = _retry_after_s(error)
            if asked is not None:
                return min(asked, self.max_retry_after_s)
            return float(backoff(state))

        def stop(state: RetryCallState) -> bool:
            # Called after ``wait``: a retry whose wait alone would end past the deadline is not begun.
            out_of_time = time.monotonic() + state.upcoming_sleep >= deadline
            return state.attempt_number >= self.max_attempts or out_of_time

        def transient(error: BaseException) -> bool:
            return _is_transient(error, structured=mode != "text")

        def log_retry(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            # Each attempt is detail (shown with -v); that the model failed in the end is a warning of its own.
            log.debug(
                "%s: request %d failed (%s); retrying in %.2fs",
                self._where,
                state.attempt_number,
                self._describe(error),
                state.upcoming_sleep,
            )

        retrying = Retrying(
            retry=retry_if_exception(transient),
            wait=wait,
            stop=stop,
            before_sleep=log_retry,
            reraise=True,
        )
        try:
            return retrying(attempt), count
        except _BadResponse as exc:
            raise _Failure(exc, count) from None
        except openai.OpenAIError as exc:
            waited = _retry_after_s(exc) if _is_transient(exc, structured=mode != "text") else None
            gave_up_waiting = waited if waited is not None and count < self.max_attempts else None
            raise _Failure(exc, count, gave_up_waiting) from None

    def _post(self, request: dict[str, Any], timeout: float) -> ChatCompletion:
        """One HTTP request, ended within ``timeout``; a 200 that is not a chat completion raises
        :class:`_BadResponse`."""
        from openai.types.chat import ChatCompletion

        from agent.llm.http import deadline

        try:
            with deadline(time.monotonic() + timeout):
                response: object = self._client.chat.completions.create(**request, timeout=timeout)
        except json.JSONDecodeError as exc:
            # The SDK calls response.json() on any application/json body and lets the decode error through.
            raise _BadResponse(f"HTTP 200 with a body that is not JSON ({exc})") from None
        if not isinstance(response, ChatCompletion):
            # With a non-JSON content type the SDK returns the body text instead of a ChatCompletion.
            preview = str(response)[:80]
            raise _BadResponse(f"HTTP 200 with a body that is not a chat completion: {preview!r}")
        error = getattr(response, "error", None)
        if error is not None and not getattr(response, "choices", None):
            # Some gateways (OpenRouter, LiteLLM proxies) report upstream failures as 200 + {"error": ...}.
            raise _BadResponse(f"HTTP 200 carrying an error: {str(error)[:200]}")
        return response

    def _remember(self, mode: str) -> None:
        with self._mode_lock:
            self._start_mode = MODES.index(mode)

    # Replies ---------------------------------------------------------------------------------------------

    def _completion(
        self,
        response: ChatCompletion,
        mode: str,
        schema: Mapping[str, Any] | None,
        messages: Sequence[Message],
        max_tokens: int,
        attempts: int,
        start: float,
    ) -> Completion:
        choices = getattr(response, "choices", None) or []
        text, finish_reason, refusal, calls = "", None, None, []
        if choices:
            choice = choices[0]
            message = getattr(choice, "message", None)
            content = getattr(message, "content", None)
            text = content if isinstance(content, str) else ""
            refusal = getattr(message, "refusal", None)
            finish_reason = getattr(choice, "finish_reason", None)
            calls = list(getattr(message, "tool_calls", None) or [])

        parsed: Any = None
        parse_error: str | None = None
        if mode == "tools" and (calls or text.strip()):
            parsed = {"reply": text, "actions": [_tool_call(call) for call in calls]}
        elif not text.strip():
            if refusal:
                parse_error = f"the model refused: {str(refusal)[:200]}"
            elif not choices:
                parse_error = "empty reply: the response has no choices"
            else:
                parse_error = "empty reply" + (
                    f" (cut at max_tokens={max_tokens})" if finish_reason == "length" else ""
                )
        elif schema is not None:
            parsed, parse_error = _parse(text, truncated=finish_reason == "length", max_tokens=max_tokens)

        usage = getattr(response, "usage", None)
        prompt_tokens = getattr(usage, "prompt_tokens", None)
        completion_tokens = getattr(usage, "completion_tokens", None)
        if not isinstance(prompt_tokens, int):
            prompt_tokens = estimate_tokens("\n".join(str(m.get("content", "")) for m in messages))
        if not isinstance(completion_tokens, int):
            completion_tokens = estimate_tokens(text) if text else 0
        model = getattr(response, "model", None)
        return Completion(
            text=text,
            parsed=parsed,
            parse_error=parse_error,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_s=time.monotonic() - start,
            model=model if isinstance(model, str) and model else self.model,
            attempts=attempts,
            mode=mode,
        )

    # Errors ----------------------------------------------------------------------------------------------

    def _give_up(self, failure: _Failure, attempts: int, start: float, limit: float, refusals: list[str]) -> LLMError:
        elapsed = time.monotonic() - start
        message = (
            f"{self.model} at {self._where}: gave up after {attempts} request(s) in {elapsed:.1f}s; "
            f"last error: {self._describe(failure.error)}"
        )
        if failure.gave_up_waiting is not None:
            message += (
                f" (the server asked to retry after {failure.gave_up_waiting:g}s, past the "
                f"{limit:g}s limit of the call)"
            )
        if refusals:
            message += f"; refused before: {'; '.join(refusals)}"
        return LLMError(redact(message), attempts=attempts)

    def _describe(self, error: BaseException | None) -> str:
        """A one-line account of an error for logs and :class:`LLMError`, without secrets."""
        if error is None:
            return "unknown error"
        text = type(error).__name__.lstrip("_")
        status = getattr(error, "status_code", None)
        if isinstance(status, int):
            text += f" (HTTP {status})"
        detail = getattr(error, "message", None) or str(error)
        cause = error.__cause__ or error.__context__
        if cause is not None and type(error).__name__ in ("APIConnectionError", "APITimeoutError"):
            detail += f" [{type(cause).__name__}: {cause}]"  # e.g. ConnectError: [Errno 111] Connection refused
        return redact(f"{text}: {str(detail)[:300]}")


def client_from_spec(spec: str, api_key_env: str | None = None, **options: Any) -> OpenAIClient:
    """An :class:`OpenAIClient` from a job file's model string.

    ``"openai:gpt-4o-mini"`` is the OpenAI API (key from ``api_key_env``, default ``OPENAI_API_KEY``);
    ``"http://host:8000/v1#qwen2.5-7b"`` (or https) is any OpenAI-compatible server, the model after ``#``.
    ``options`` go to the constructor (timeouts, attempts).

    Raises:
        ValueError: any other form; the message lists the accepted ones.
    """
    text = spec.strip() if isinstance(spec, str) else ""
    if text.startswith("openai:"):
        model = text[len("openai:") :].strip()
        if not model:
            raise ValueError(f"model spec 'openai:' names no model: expected {_SPEC_FORMS}")
        return OpenAIClient(model, api_key_env=api_key_env, **options)
    if text.lower().startswith(("http://", "https://")):
        url, _, model = text.partition("#")
        model = model.strip()
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - validates the port (raises ValueError when it is not a number)
        except ValueError as exc:
            raise ValueError(f"bad URL in model spec {display_url(url)!r} ({exc}): expected {_SPEC_FORMS}") from None
        if not parts.hostname:
            raise ValueError(f"model spec {display_url(url)!r} has no host: expected {_SPEC_FORMS}")
        if not model:
            raise ValueError(
                f"model spec {display_url(url)!r} names no model after '#': expected {_SPEC_FORMS}, "
                "e.g. 'http://127.0.0.1:8000/v1#qwen2.5-7b'"
            )
        return OpenAIClient(model, base_url=url.rstrip("/"), api_key_env=api_key_env, **options)
    shown = display_url(text) if "://" in text else text
    raise ValueError(f"unsupported model spec {shown[:100]!r}: expected {_SPEC_FORMS}")


# Helpers ---------------------------------------------------------------------------------------------------


def _is_official(base_url: str | None) -> bool:
    """Whether requests go to OpenAI itself (where a missing key is an error, not a local server's habit)."""
    if base_url is None:
        return True
    host = urlsplit(base_url).hostname or ""
    return host == "api.openai.com"


def _tool_call(call: Any) -> dict[str, Any]:
    """A tool call of the reply as ``{"name", "arguments"}``: the arguments parsed when they are a JSON object."""
    function = getattr(call, "function", None)
    name = getattr(function, "name", None)
    raw = getattr(function, "arguments", None)
    arguments: Any = raw
    if isinstance(raw, str):
        try:
            arguments = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError:
            arguments = raw
    return {"name": name if isinstance(name, str) else "", "arguments": arguments}


def _with_schema_instruction(messages: list[dict[str, str]], schema: Mapping[str, Any]) -> list[dict[str, str]]:
    """The messages with the schema spelled out for modes where the server does not enforce it.

    The instruction joins the first system message rather than adding a second one: several chat templates
    (Mistral's, Gemma's) reject a second system message or one that is not first.
    """
    note = (
        "Reply with one JSON value and nothing else (no prose, no code fence). "
        "It must satisfy this JSON Schema:\n" + json.dumps(schema, separators=(",", ":"), sort_keys=True)
    )
    if messages and messages[0].get("role") == "system":
        first = dict(messages[0])
        first["content"] = f"{first.get('content', '')}\n\n{note}".lstrip()
        return [first, *messages[1:]]
    return [{"role": "system", "content": note}, *messages]


def _parse(text: str, *, truncated: bool, max_tokens: int) -> tuple[Any, str | None]:
    """The JSON in a reply, or why there is none. Never raises: a bad reply is for the caller to repair."""
    try:
        return json.loads(text), None
    except (ValueError, RecursionError) as exc:
        whole_error = exc
    if truncated:
        # Scanning a cut reply would find an inner object of the unfinished outer one: report, don't guess.
        return None, f"reply cut at max_tokens={max_tokens} before the JSON was complete ({whole_error})"
    if len(text) > MAX_SCAN_CHARS:
        return None, f"reply of {len(text)} characters is not JSON and too long to search for JSON in"
    try:
        return extract_json(text), None
    except (ValueError, RecursionError) as exc:  # RecursionError: deeply nested brackets
        return None, str(exc) or type(exc).__name__


def _status(error: BaseException | None) -> int | None:
    status = getattr(error, "status_code", None)
    return status if isinstance(status, int) else None


def _is_format_refusal(error: BaseException) -> bool:
    """A server saying "not this response_format": 400/422, or any error that talks about the format."""
    status = _status(error)
    if status is None or status == 429:
        return False
    if status in (400, 422):
        return True
    text = f"{getattr(error, 'message', '')} {getattr(error, 'body', '')}".lower()
    return status >= 400 and any(word in text for word in _FORMAT_WORDS)


def _is_transient(error: BaseException, structured: bool) -> bool:
    """Worth asking again: rate limits, server errors, timeouts, dropped connections, garbled 200s."""
    import openai

    if isinstance(error, _BadResponse | openai.APIConnectionError):  # APITimeoutError is one too
        return True
    status = _status(error)
    if status is None:
        return False
    if structured and _is_format_refusal(error):
        return False  # the next structured-output mode, not the same request again
    return status in (408, 429) or status >= 500


def _retry_after_s(error: BaseException | None, now: datetime | None = None) -> float | None:
    """The server's requested wait in seconds (Retry-After-Ms, Retry-After seconds or HTTP date), if any."""
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    return parse_retry_after(headers.get("retry-after"), now)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """A Retry-After header in seconds: delta-seconds or an HTTP date (RFC 9110 10.2.3); None if unusable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds or seconds == float("inf"):  # NaN, inf
        return None
    return max(0.0, seconds)

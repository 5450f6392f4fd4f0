"""A real OpenAI-compatible HTTP server that misbehaves on purpose, for testing model clients without mocks.

Why: a mocked SDK only proves that our code handles the exceptions we *think* the SDK raises. This server
speaks real HTTP on 127.0.0.1, so the official ``openai`` client, its HTTP stack and our retry logic are
exercised end to end: real 429s with Retry-After, real timeouts, real connection refusals.

API
---
::

    from agent.testing.misbehaving_server import MisbehavingServer, ok, status, truncated, candidates_json

    with MisbehavingServer([status(429, retry_after=1), ok(candidates_json([{"x": 1.0}]))]) as server:
        client = OpenAIClient("test-model", base_url=server.base_url)   # or client_from_spec(server.spec())
        client.complete([...], schema=...)
        assert len(server.requests) == 2
        assert server.requests[1].response_format == {...}

* ``MisbehavingServer(script=(), default=ok(...), model="test-model", enforce_max_tokens=False)``:
  ``start()``/``stop()`` or use it as a context manager; in ``tests/llm`` the pytest fixture
  ``misbehaving_server`` gives a started one with an empty script (elsewhere, use the context manager). Binds
  127.0.0.1 on a free port. With ``enforce_max_tokens=True`` it behaves as real servers do: a reply longer
  than the request's ``max_tokens`` (or ``max_completion_tokens``) is cut there, with finish_reason "length"
  (by default replies are sent whole, so that ``huge`` is huge).
* ``server.push(*behaviours)`` appends to the script; each ``POST /v1/chat/completions`` consumes the next
  behaviour, and once the script is used up every request gets ``default`` (``set_default`` changes it).
  ``GET /v1/models`` lists ``model`` (for readiness checks); other paths get 404. Bodies are always
  answered with ``Connection: close``.
* ``server.requests``: a copy of every recorded request, in order (:class:`RecordedRequest`: ``path``,
  ``headers`` with lower-case names, ``body`` as parsed JSON, ``messages``, ``response_format``,
  ``behaviour``). ``server.base_url`` is ``http://127.0.0.1:<port>/v1``; ``server.spec(model)`` is the
  ``"<base_url>#<model>"`` form accepted by ``agent.llm.openai.client_from_spec``.

Behaviours (functions returning a :class:`Behaviour`; the ones without arguments may also be put in the
script uncalled, e.g. ``[go_away]``):

* ``ok(content, usage=True)``: a proper ``chat.completion`` with ``usage``. ``content`` is a string or a callable
  ``(request_body: dict) -> str`` (e.g. :func:`reply_from_schema`, which answers whatever schema was asked).
* ``status(code, retry_after=None, message=None)``: an OpenAI-style error body with that HTTP status;
  ``retry_after`` (seconds, or a ``datetime`` sent as an HTTP date, or a raw string) sets Retry-After.
* ``malformed_json_body(content_type="application/json")``: HTTP 200 whose body is not JSON.
* ``truncated(content)``: ``finish_reason="length"`` and the content cut in the middle.
* ``reject_response_format()``: HTTP 400 saying ``response_format`` type ``json_schema`` is not supported
  (what older vLLM / llama.cpp / LM Studio builds answer). ``reject_response_format("json_object")`` refuses
  that type instead. Requests without that ``response_format`` type get ``then`` (default: the default).
* ``slow(seconds, then=None)``: waits ``seconds`` (longer than the client timeout) before answering
  ``then`` (default: the default behaviour) - normally to a client that has already given up. A server that
  accepts and never answers is ``slow(3600)`` (the server's ``stop`` ends the wait).
* ``trickle(interval_s=0.5, padding=100_000, content="{}")``: HTTP 200 headers at once, with a Content-Length
  of the whole body, then the body one byte per ``interval_s``: ``padding`` blanks (leading whitespace, which
  JSON allows), then a proper completion of ``content``. Each byte restarts a per-read timeout, so only a
  limit on the whole request ends it; it stops when the client hangs up or the server stops.
* ``echo_headers()``: a proper completion whose content is the request's headers, one ``name: value`` a line,
  ``Authorization`` included - what a debugging proxy or a careless server does with a key.
* ``empty_choices()``: a valid completion with ``"choices": []``.
* ``huge(n_chars=1_000_000, tail="")``: a completion whose content is ``n_chars`` of prose (plus ``tail``).
* ``raw_body(body, code=200, content_type="application/json")``: exactly that answer.
* ``tool_calls(calls, content="")``: a completion whose message calls tools: ``calls`` is a list of
  ``(name, arguments)``, the arguments a dict (sent as JSON) or a raw string (to send malformed ones);
  finish_reason "tool_calls".
* ``reject_tools(then=None)``: HTTP 400 saying tools are not supported (what servers without function calling
  answer) to a request that offers tools; other requests get ``then`` (default: the default).
* ``go_away()``: drops this connection without an answer and stops listening for good: later requests get
  "connection refused".

Content helpers (strings to pass to ``ok``): :func:`candidates_json`, :func:`prose_around`,
:func:`fenced`, :func:`out_of_bounds_json`, :func:`extra_keys_json`, :func:`empty_array_json`,
:func:`sample_from_schema` / :func:`reply_from_schema`.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = [
    "Behaviour",
    "MisbehavingServer",
    "RecordedRequest",
    "candidates_json",
    "echo_headers",
    "empty_array_json",
    "empty_choices",
    "extra_keys_json",
    "fenced",
    "go_away",
    "huge",
    "malformed_json_body",
    "ok",
    "out_of_bounds_json",
    "prose_around",
    "raw_body",
    "reject_response_format",
    "reject_tools",
    "reply_from_schema",
    "sample_from_schema",
    "slow",
    "status",
    "tool_calls",
    "trickle",
    "truncated",
]

Content = str | Callable[[dict[str, Any]], str]


# Behaviours ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Behaviour:
    """What the server does with one request. Build these with the functions below, not directly."""

    kind: str
    content: Content | None = None
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    message: str | None = None
    seconds: float = 0.0
    then: Behaviour | None = None
    content_type: str = "application/json"
    cut_at: int | None = None
    rejected_type: str = "json_schema"
    usage: bool = True
    padding: int = 0
    calls: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return self.kind if self.kind != "status" else f"status({self.status})"


def ok(content: Content = "{}", usage: bool = True) -> Behaviour:
    """A proper chat.completion (finish_reason "stop"); ``usage=False`` leaves the token counts out."""
    return Behaviour("ok", content=content, usage=usage)


def status(code: int, retry_after: float | datetime | str | None = None, message: str | None = None) -> Behaviour:
    """An HTTP error with an OpenAI-style error body; ``retry_after`` sets the Retry-After header."""
    headers: tuple[tuple[str, str], ...] = ()
    if retry_after is not None:
        if isinstance(retry_after, datetime):
            value = format_datetime(retry_after, usegmt=True)
        elif isinstance(retry_after, str):
            value = retry_after
        else:
            value = f"{retry_after:g}"
        headers = (("Retry-After", value),)
    return Behaviour("status", status=code, headers=headers, message=message)


def malformed_json_body(content_type: str = "application/json") -> Behaviour:
    """HTTP 200 with a body that is not JSON (a proxy's error page, a server dying mid-write)."""
    return Behaviour("malformed_json_body", content_type=content_type)


def truncated(content: Content, cut_at: int | None = None) -> Behaviour:
    """finish_reason "length", content cut at ``cut_at`` (default: the middle)."""
    return Behaviour("truncated", content=content, cut_at=cut_at)


def reject_response_format(rejected_type: str = "json_schema", then: Behaviour | None = None) -> Behaviour:
    """HTTP 400 refusing ``response_format`` of ``rejected_type``; other requests get ``then``."""
    return Behaviour("reject_response_format", rejected_type=rejected_type, then=then)


def slow(seconds: float, then: Behaviour | None = None) -> Behaviour:
    """Sleep ``seconds`` (the server's stop cuts it short), then answer ``then``."""
    return Behaviour("slow", seconds=seconds, then=then)


def trickle(interval_s: float = 0.5, padding: int = 100_000, content: Content = "{}") -> Behaviour:
    """HTTP 200 headers, then the body one byte every ``interval_s``: ``padding`` blanks, then a completion."""
    return Behaviour("trickle", content=content, seconds=interval_s, padding=padding)


def echo_headers() -> Behaviour:
    """A completion whose content is the request's headers (``name: value`` lines), Authorization included."""
    return Behaviour("echo_headers")


def empty_choices() -> Behaviour:
    """A completion with no choices at all."""
    return Behaviour("empty_choices")


def huge(n_chars: int = 1_000_000, tail: str = "") -> Behaviour:
    """A completion whose content is ``n_chars`` characters of prose followed by ``tail``."""
    filler = ("lorem ipsum dolor sit amet " * (n_chars // 27 + 1))[:n_chars]
    return Behaviour("huge", content=filler + tail)


def tool_calls(calls: Sequence[tuple[str, Mapping[str, Any] | str]], content: str = "") -> Behaviour:
    """A completion that calls tools: ``(name, arguments)`` each, a dict sent as JSON, a string sent as it is."""
    sent = tuple((name, args if isinstance(args, str) else json.dumps(args)) for name, args in calls)
    return Behaviour("tool_calls", content=content, calls=sent)


def reject_tools(then: Behaviour | None = None) -> Behaviour:
    """HTTP 400 to a request offering tools, as a server without function calling answers; else ``then``."""
    return Behaviour("reject_tools", then=then)


def raw_body(body: str, code: int = 200, content_type: str = "application/json") -> Behaviour:
    """Exactly ``body`` with that status and content type (e.g. a gateway's 200 + ``{"error": ...}``)."""
    return Behaviour("raw_body", content=body, status=code, content_type=content_type)


def go_away() -> Behaviour:
    """Drop the connection unanswered and stop listening: later requests are refused."""
    return Behaviour("go_away")


# Content helpers -------------------------------------------------------------------------------------------


def candidates_json(candidates: Sequence[Mapping[str, Any]], key: str | None = "candidates") -> str:
    """Candidates as the reply JSON: ``{"candidates": [...]}`` (an object, as OpenAI's strict json_schema
    mode requires at top level), or the bare array when ``key`` is None."""
    items = [dict(c) for c in candidates]
    return json.dumps(items if key is None else {key: items})


def prose_around(json_text: str, before: str = "Sure! Here are my proposals:\n", after: str = "\nGood luck.") -> str:
    """JSON wrapped in chatter, as small models write it when no structure is enforced."""
    return f"{before}{json_text}{after}"


def fenced(json_text: str, before: str = "Here you go:\n", after: str = "\n") -> str:
    """JSON in a ```json fence."""
    return f"{before}```json\n{json_text}\n```{after}"


def out_of_bounds_json(
    candidates: Sequence[Mapping[str, Any]], key: str | None = "candidates", **bad_values: Any
) -> str:
    """The candidates with ``bad_values`` (e.g. ``lr=10.0`` outside its bounds) written into every one."""
    return candidates_json([{**c, **bad_values} for c in candidates], key=key)


def extra_keys_json(candidates: Sequence[Mapping[str, Any]], key: str | None = "candidates", **extra: Any) -> str:
    """The candidates with keys the schema does not allow (default: ``{"unexpected": true}``)."""
    return candidates_json([{**c, **(extra or {"unexpected": True})} for c in candidates], key=key)


def empty_array_json(key: str | None = "candidates") -> str:
    """No candidates at all: ``{"candidates": []}`` (or ``[]``)."""
    return candidates_json([], key=key)


def sample_from_schema(schema: Mapping[str, Any], rng: random.Random | None = None) -> Any:
    """A random value valid under a (simple) JSON Schema: object, array, number, integer, string, boolean,
    enum, const, anyOf/oneOf. Enough for the schemas tunesmith sends; ``$ref`` is not followed."""
    rng = rng or random.Random(0)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return rng.choice(list(schema["enum"]))
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            return sample_from_schema(schema[combinator][0], rng)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props: Mapping[str, Any] = schema.get("properties", {})
        return {name: sample_from_schema(sub, rng) for name, sub in props.items()}
    if kind == "array":
        low = int(schema.get("minItems", 1))
        high = int(schema.get("maxItems", max(low, 2)))
        items = schema.get("items", {"type": "number"})
        return [sample_from_schema(items, rng) for _ in range(rng.randint(low, max(low, high)))]
    if kind in ("number", "integer"):
        low_f = float(schema.get("minimum", schema.get("exclusiveMinimum", 0.0)))
        high_f = float(schema.get("maximum", schema.get("exclusiveMaximum", low_f + 1.0)))
        if kind == "integer":
            return rng.randint(int(low_f), int(high_f))
        return low_f + (high_f - low_f) * (0.05 + 0.9 * rng.random())
    if kind == "string":
        text = f"sample text {rng.randint(0, 10**6)}"
        max_length = schema.get("maxLength")
        return text[: int(max_length)] if max_length is not None else text
    if kind == "boolean":
        return rng.random() < 0.5
    return None


def reply_from_schema(seed: int = 0) -> Callable[[dict[str, Any]], str]:
    """Content for ``ok``: a valid reply to whatever ``response_format.json_schema`` the request carried
    (``{}`` when none), different on every call - lets a whole study run against this server."""
    rng = random.Random(seed)
    lock = threading.Lock()

    def content(body: dict[str, Any]) -> str:
        schema = _requested_schema(body)
        with lock:
            return json.dumps(sample_from_schema(schema, rng) if schema is not None else {})

    return content


def _requested_schema(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    fmt = body.get("response_format")
    if isinstance(fmt, Mapping) and fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        if isinstance(schema, Mapping):
            return schema
    return None


# The server ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    raw_body: bytes
    behaviour: str
    received_at: float = field(default_factory=time.monotonic)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", [])) if isinstance(self.body, dict) else []

    @property
    def response_format(self) -> dict[str, Any] | None:
        fmt = self.body.get("response_format") if isinstance(self.body, dict) else None
        return fmt if isinstance(fmt, dict) else None


def _normalize(behaviour: Behaviour | Callable[[], Behaviour]) -> Behaviour:
    return behaviour if isinstance(behaviour, Behaviour) else behaviour()


class MisbehavingServer:
    """An OpenAI-compatible chat-completions server on 127.0.0.1 that follows a script of behaviours."""

    def __init__(
        self,
        script: Iterable[Behaviour | Callable[[], Behaviour]] = (),
        default: Behaviour | Callable[[], Behaviour] | None = None,
        model: str = "test-model",
        enforce_max_tokens: bool = False,
    ) -> None:
        self.model = model
        self.enforce_max_tokens = enforce_max_tokens
        self._script: list[Behaviour] = [_normalize(b) for b in script]
        self._default = _normalize(default) if default is not None else ok(reply_from_schema())
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._gone = threading.Event()
        self._listening_lock = threading.Lock()
        self._listening = False
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._counter = 0
        #: Connections accepted after ``go_away`` (answered by closing them; not in ``requests``).
        self.dropped = 0

    # lifecycle
    def start(self) -> MisbehavingServer:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        httpd.daemon_threads = True
        self._httpd = httpd
        self._listening = True
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="misbehaving-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening, wake sleeping ``slow`` handlers, release the port."""
        self._stopping.set()
        self._stop_listening()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> MisbehavingServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _stop_listening(self) -> None:
        with self._listening_lock:
            if not self._listening or self._httpd is None:
                return
            self._listening = False
            self._httpd.shutdown()  # waits for serve_forever to return (never called from its own thread)
            self._httpd.server_close()  # closes the listening socket: new connections are refused

    # configuration and inspection
    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the server is not started")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def spec(self, model: str | None = None) -> str:
        """The ``"http://127.0.0.1:<port>/v1#<model>"`` form for ``client_from_spec``."""
        return f"{self.base_url}#{model or self.model}"

    def push(self, *behaviours: Behaviour | Callable[[], Behaviour]) -> None:
        with self._lock:
            self._script.extend(_normalize(b) for b in behaviours)

    def set_default(self, behaviour: Behaviour | Callable[[], Behaviour]) -> None:
        with self._lock:
            self._default = _normalize(behaviour)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def remaining_script(self) -> int:
        with self._lock:
            return len(self._script)

    # used by the handler
    def _next(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> tuple[Behaviour, Any]:
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with self._lock:
            behaviour = self._script.pop(0) if self._script else self._default
            if behaviour.kind == "reject_response_format":
                fmt = body.get("response_format") if isinstance(body, dict) else None
                if not (isinstance(fmt, dict) and fmt.get("type") == behaviour.rejected_type):
                    behaviour = behaviour.then or self._default
            self._counter += 1
            self._requests.append(RecordedRequest(method, path, headers, body, raw, str(behaviour)))
        return behaviour, body


def _make_handler(server: MisbehavingServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        owner = server

    return Handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: MisbehavingServer

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request stderr log."""

    # plumbing
    def _drop(self) -> None:
        """Close the connection without a byte of answer (the client sees a disconnect)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _send(
        self, code: int, body: bytes, content_type: str = "application/json", headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        self.close_connection = True
        try:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass  # the client gave up (e.g. after a timeout): nothing to do

    def _send_json(self, code: int, value: Any, headers: Sequence[tuple[str, str]] = ()) -> None:
        self._send(code, json.dumps(value).encode(), headers=headers)

    def _error(
        self, code: int, message: str, type_: str, param: str | None = None, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        self._send_json(code, {"error": {"message": message, "type": type_, "param": param, "code": None}}, headers)

    # endpoints
    def do_GET(self) -> None:
        if self.owner._gone.is_set():
            self.owner.dropped += 1
            self._drop()
            return
        if self.path.rstrip("/") == "/v1/models":
            self._send_json(200, {"object": "list", "data": [{"id": self.owner.model, "object": "model"}]})
        else:
            self._error(404, f"no route {self.path}", "not_found_error")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.owner._gone.is_set():
            self.owner.dropped += 1
            self._drop()
            return
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._error(404, f"no route {self.path}", "not_found_error")
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        behaviour, body = self.owner._next("POST", self.path, headers, raw)
        self._act(behaviour, body if isinstance(body, dict) else {})

    def _act(self, b: Behaviour, body: dict[str, Any]) -> None:
        if b.kind in ("ok", "huge"):
            self._completion(body, _content(b, body), "stop", usage=b.usage)
        elif b.kind == "echo_headers":
            self._completion(body, "\n".join(f"{name}: {value}" for name, value in self.headers.items()), "stop")
        elif b.kind == "trickle":
            self._trickle(
                b.padding * b" " + json.dumps(self._reply(body, _content(b, body), "stop")).encode(), b.seconds
            )
        elif b.kind == "truncated":
            text = _content(b, body)
            self._completion(body, text[: b.cut_at if b.cut_at is not None else len(text) // 2], "length")
        elif b.kind == "empty_choices":
            self._send_json(200, {**_envelope(body, self.owner.model), "choices": [], "usage": _usage(body, "")})
        elif b.kind == "status":
            message = b.message or _STATUS_MESSAGES.get(b.status, f"error {b.status}")
            type_ = {429: "rate_limit_error"}.get(
                b.status, "server_error" if b.status >= 500 else "invalid_request_error"
            )
            self._error(b.status, message, type_, headers=b.headers)
        elif b.kind == "malformed_json_body":
            self._send(200, _MALFORMED_BODY, b.content_type)
        elif b.kind == "reject_response_format":
            self._error(
                400,
                f"response_format type '{b.rejected_type}' is not supported by this server "
                f"(json_schema structured output unavailable)",
                "invalid_request_error",
                param="response_format",
            )
        elif b.kind == "tool_calls":
            reply = self._reply(body, _content(b, body), "tool_calls")
            reply["choices"][0]["message"]["tool_calls"] = [
                {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": arguments}}
                for i, (name, arguments) in enumerate(b.calls)
            ]
            self._send_json(200, reply)
        elif b.kind == "reject_tools":
            if "tools" in body:
                self._error(400, "tools are not supported by this server", "invalid_request_error", param="tools")
            else:
                self._act(b.then or self.owner._default, body)
        elif b.kind == "slow":
            self.owner._stopping.wait(b.seconds)
            if self.owner._stopping.is_set():
                self._drop()
            else:
                self._act(b.then or self.owner._default, body)
        elif b.kind == "raw_body":
            self._send(b.status, _content(b, body).encode(), b.content_type)
        elif b.kind == "go_away":
            self.owner._gone.set()
            self._drop()
            self.owner._stop_listening()
        else:  # pragma: no cover - a Behaviour built by hand with a bad kind
            self._error(500, f"unknown behaviour {b.kind!r}", "server_error")

    def _completion(self, body: dict[str, Any], text: str, finish_reason: str, usage: bool = True) -> None:
        self._send_json(200, self._reply(body, text, finish_reason, usage))

    def _reply(self, body: dict[str, Any], text: str, finish_reason: str, usage: bool = True) -> dict[str, Any]:
        """A chat.completion of ``text``, cut at ``max_tokens`` when the server enforces it."""
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        if self.owner.enforce_max_tokens and isinstance(limit, int) and _tokens(text) > limit:
            text, finish_reason = text[: max(limit - 1, 0) * 4], "length"
        message = {"role": "assistant", "content": text}
        choice = {"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}
        reply = {**_envelope(body, self.owner.model), "choices": [choice]}
        if usage:
            reply["usage"] = _usage(body, text)
        return reply

    def _trickle(self, data: bytes, interval_s: float) -> None:
        """Headers now, then ``data`` one byte per ``interval_s``, until sent, the client leaves or the server stops."""
        self.close_connection = True
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.flush()
            for i in range(len(data)):
                if self.owner._stopping.wait(interval_s):
                    break
                self.wfile.write(data[i : i + 1])
                self.wfile.flush()
        except OSError:
            pass  # the client gave up: that is the point


#: What a server that dies mid-write, or a proxy that splices in an error page, sends: not JSON.
_MALFORMED_BODY = b'{"id": "chatcmpl-broken", "choices": [{"message": <html>502 Bad Gateway</html>'

_STATUS_MESSAGES = {
    429: "Rate limit reached for requests. Please try again later.",
    500: "The server had an error while processing your request.",
    502: "Bad gateway.",
    503: "The engine is currently overloaded, please try again later.",
}


def _content(b: Behaviour, body: dict[str, Any]) -> str:
    content = b.content if b.content is not None else "{}"
    return content if isinstance(content, str) else content(body)


def _envelope(body: Mapping[str, Any], model: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{random.randrange(16**12):012x}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(body.get("model") or model),
    }


def _usage(body: Mapping[str, Any], text: str) -> dict[str, int]:
    messages = body.get("messages") or []
    prompt = sum(len(str(m.get("content", ""))) for m in messages if isinstance(m, Mapping))
    prompt_tokens, completion_tokens = prompt // 4 + 1, _tokens(text)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _tokens(text: str) -> int:
    """This server's token count of a reply: one per four characters, plus one."""
    return len(text) // 4 + 1

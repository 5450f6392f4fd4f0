"""The candidate program, as the user's trusted evaluator reaches it: confined, apart, timed and checked from outside.

A model-written program must not be able to change its score except by being better. So for a job with Code
parameters the evaluator (the job's ``command`` and its ``cascade`` stages, the user's own code) runs on the
host in the job's folder, and the candidate runs apart, in its sandboxed copy, started from the evaluator
through this module:

.. code-block:: python

    from tools.candidate import Candidate

    candidate = Candidate.from_env()                      # this trial's candidate
    with candidate.functions("slow") as slow:             # slow.py of the candidate, in a confined process
        call = slow.call("count_pairs", nums, target)     # arguments and result as JSON; timed here
    print(json.dumps({"seconds": call.seconds}))          # the evaluator's stdout is the result channel

The candidate cannot write the evaluator's stdout (tunesmith reads the metric there), cannot touch the
evaluator's files (they are not in its copy's view) and cannot see what the evaluator keeps (reference answers,
held-out labels). What it returns is data the evaluator checks; the seconds are measured on this side.
:meth:`Candidate.run` runs a whole program of the copy instead (a training script whose predictions the
evaluator scores), :meth:`Candidate.start` gives its pipes.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.sandbox import Confinement, SandboxRun

#: Set by tunesmith for the evaluator of a candidate: the file describing the candidate's sandbox.
CANDIDATE_ENV = "TUNESMITH_CANDIDATE"
#: The largest reply the harness may send (a result, an error): a flood is the candidate's failure, not ours.
MAX_REPLY_BYTES = 64 << 20

#: The harness run in the candidate's process: imports the module, then answers one JSON call per line.
#: The module's own prints go to stderr; replies go to the pipe that was stdout.
HARNESS = r"""
import importlib, json, os, sys, traceback
reply = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
sys.path.insert(0, os.getcwd())
def send(message):
    reply.write(json.dumps(message) + "\n")
    reply.flush()
try:
    module = importlib.import_module(sys.argv[1])
except BaseException as exc:
    send({"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]})
    raise SystemExit(1)
send({"ready": True})
for line in sys.stdin:
    request = json.loads(line)
    try:
        value = getattr(module, request["function"])(*request["args"], **request["kwargs"])
        send({"value": value})
    except BaseException as exc:
        send({"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]})
"""


class CandidateError(Exception):
    """The candidate failed: it raised, crashed, answered nothing in time or answered garbage. The message says
    which, in a line the model can act on (it lands in the trial's feedback when the evaluator prints it)."""


@dataclass(frozen=True)
class Call:
    """A call of one of the candidate's functions: what it returned and how long it took, measured by us from
    the moment the arguments were sent to the moment the answer arrived."""

    value: Any
    seconds: float


class Candidate:
    """This trial's candidate: its copy (read its files there) and how to run it confined."""

    def __init__(self, confinement: Confinement) -> None:
        self._confinement = confinement

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Candidate:
        """The candidate of the trial this evaluator runs for.

        Raises:
            CandidateError: not run by tunesmith for a job with Code parameters (the message says how to).
        """
        spec = (os.environ if environ is None else environ).get(CANDIDATE_ENV)
        if not spec:
            raise CandidateError(
                f"{CANDIDATE_ENV} is not set: this evaluator runs the candidate of a tunesmith trial; run it with "
                "`tunesmith run job.toml` (a job with a Code parameter), not by hand"
            )
        return cls(Confinement.load(Path(spec)))

    @property
    def folder(self) -> Path:
        """The candidate's copy of the job's folder, its code written in. Read it before running the candidate:
        afterwards its files are whatever the candidate made of them."""
        return self._confinement.copy

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout_s: float | None = None,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> SandboxRun:
        """Run ``argv`` in the candidate's copy, confined, and wait for it (``input`` on its stdin)."""
        return self._confinement.run(argv, timeout_s=timeout_s, env=env, input=input)

    @contextlib.contextmanager
    def start(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
        """Start ``argv`` in the candidate's copy, confined, with pipes on stdin and stdout (stderr is ours);
        everything it started is killed when the block ends."""
        with self._confinement.start(argv, env=env) as started:
            yield started.process

    @contextlib.contextmanager
    def functions(self, module: str, *, timeout_s: float = 60.0) -> Iterator[Functions]:
        """The functions of the candidate's ``module`` (``"slow"`` for slow.py), called one at a time in a
        confined process that imports it once.

        Raises:
            CandidateError: the module does not import (its error), or says nothing within ``timeout_s``.
        """
        with self.start([sys.executable, "-c", HARNESS, module]) as process:
            functions = Functions(process, timeout_s)
            functions.receive(timeout_s, what=f"importing {module}")
            yield functions


class Functions:
    """Calls into a candidate's module (:meth:`Candidate.functions`)."""

    def __init__(self, process: subprocess.Popen[bytes], timeout_s: float) -> None:
        self._process = process
        self._timeout_s = timeout_s
        self._buffer = bytearray()

    def call(self, function: str, *args: Any, timeout_s: float | None = None, **kwargs: Any) -> Call:
        """Call ``function(*args, **kwargs)`` in the candidate (arguments and result travel as JSON).

        Raises:
            CandidateError: it raised (its error and the end of its traceback), crashed, or took longer than
                ``timeout_s`` (the functions' default when None).
        """
        assert self._process.stdin is not None
        request = json.dumps({"function": function, "args": args, "kwargs": kwargs}).encode() + b"\n"
        started = time.perf_counter()
        try:
            self._process.stdin.write(request)
            self._process.stdin.flush()
        except OSError as exc:
            gone = f"the candidate's process is gone ({exc}) before {function}() could be called"
            raise CandidateError(gone) from exc
        value = self.receive(self._timeout_s if timeout_s is None else timeout_s, what=f"{function}()")
        return Call(value, time.perf_counter() - started)

    def receive(self, timeout_s: float, *, what: str) -> Any:
        """The next reply: its value, or :class:`CandidateError` for its error, a crash or silence."""
        line = self._line(timeout_s, what)
        try:
            reply = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CandidateError(f"{what}: the candidate answered something that is not JSON ({exc})") from exc
        if not isinstance(reply, dict):
            raise CandidateError(f"{what}: the candidate answered {type(reply).__name__}, not a reply")
        if "error" in reply:
            raise CandidateError(f"{what} raised {reply['error']}\n{reply.get('traceback', '')}".rstrip())
        return reply.get("value")

    def _line(self, timeout_s: float, what: str) -> bytes:
        """The next line the candidate sent, read in pieces (linear in its length, bounded by
        :data:`MAX_REPLY_BYTES`)."""
        stdout = self._process.stdout
        assert stdout is not None
        deadline = time.monotonic() + timeout_s
        end = self._buffer.find(b"\n")
        while end < 0:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CandidateError(f"{what} gave no answer within {timeout_s:g} s")
            if len(self._buffer) > MAX_REPLY_BYTES:
                raise CandidateError(f"{what}: the answer is over {MAX_REPLY_BYTES >> 20} MiB")
            ready, _, _ = select.select([stdout], [], [], left)
            if ready:
                chunk = os.read(stdout.fileno(), 1 << 20)
                if not chunk:
                    status = self._process.poll()
                    raise CandidateError(f"{what}: the candidate's process ended (status {status}) without answering")
                newline = chunk.find(b"\n")
                end = -1 if newline < 0 else len(self._buffer) + newline
                self._buffer += chunk
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return line

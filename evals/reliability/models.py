"""models: one short CLI study per misbehaving model-server behaviour; each must end on time, exit 0.

The README promises that a model that is absent, wrong or slow never stops the search: retries are bounded,
BO proposes instead, and ``wall_time`` bounds a run. For each behaviour a real HTTP server
(:class:`agent.testing.misbehaving_server.MisbehavingServer`) answers *every* request that way (a persistent
fault, not a blip); ``tunesmith run`` with the ``llm`` proposer, a fast objective, ``wall_time`` (10 s) and a
trial budget it cannot reach runs against it in a subprocess. Held: the run exited 0 within wall time + grace
(10 s: start-up and the closing summary). Trials that started after the wall time ran out (counted from the
study's creation, i.e. the run's own clock, start-up excluded) are reported too: they say where an overrun
came from. A run still alive at wall time + grace + ``--hard-limit`` (15 s) is killed and counted at that
time. Behaviours this tree's server does not offer are listed, not tried.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from agent.testing import misbehaving_server as ms
from evals.reliability.common import (
    Context,
    Row,
    Supervisor,
    child_env,
    cli_argv,
    job_toml,
    read_trials,
)

SPACE = {"x": {"type": "float", "low": 0.0, "high": 1.0}, "k": {"type": "categorical", "choices": ["a", "b"]}}
OBJECTIVE = """\
def f(params):
    return (params["x"] - 0.3) ** 2 + (params["k"] == "b")
"""
#: The "error inside a 200" a gateway sends.
ERROR_IN_200 = '{"error": {"message": "upstream model overloaded", "type": "server_error"}}'
OUT_OF_BOUNDS = ms.candidates_json([{"params": {"x": 7.0, "k": "z"}, "rationale": "far outside"}])


def optional_behaviour(name: str, *args: Any, **kwargs: Any) -> ms.Behaviour | None:
    """``ms.<name>(...)`` if this tree's server has it (behaviours are being added); None otherwise."""
    factory = getattr(ms, name, None)
    if factory is None:
        return None
    try:
        behaviour = factory(*args, **kwargs)
    except TypeError:  # a different signature than expected: not the behaviour this harness knows
        return None
    return behaviour if isinstance(behaviour, ms.Behaviour) else None


def _prose(body: dict[str, Any]) -> str:
    return ms.prose_around(ms.reply_from_schema(1)(body))


def _hang() -> ms.Behaviour | None:
    """``hang()`` if the server has one; otherwise what its docstring calls a server that never answers."""
    return optional_behaviour("hang") or ms.slow(3600)


@dataclass(frozen=True)
class Misbehaviour:
    """A behaviour by name, what it does, and how to build it (None: this tree's server lacks it)."""

    name: str
    does: str
    build: Callable[[], ms.Behaviour | None]


BEHAVIOURS: tuple[Misbehaviour, ...] = (
    Misbehaviour("ok", "answers properly (the control)", lambda: ms.ok(ms.reply_from_schema(0))),
    Misbehaviour("status_429", "429, Retry-After: 5", lambda: ms.status(429, retry_after=5)),
    Misbehaviour("status_500", "500", lambda: ms.status(500)),
    Misbehaviour("status_503", "503, Retry-After: 30 (past the wall time)", lambda: ms.status(503, retry_after=30)),
    Misbehaviour("malformed_json", "200 whose body is not JSON", ms.malformed_json_body),
    Misbehaviour("truncated", "finish_reason length, reply cut in half", lambda: ms.truncated(ms.reply_from_schema(0))),
    Misbehaviour("no_json_schema", "400 for response_format json_schema, then answers",
                 lambda: ms.reject_response_format(then=ms.ok(ms.reply_from_schema(0)))),
    Misbehaviour("slow", "answers after 20 s (past the wall time)",
                 lambda: ms.slow(20, then=ms.ok(ms.reply_from_schema(0)))),
    Misbehaviour("empty_choices", '"choices": []', ms.empty_choices),
    Misbehaviour("huge", "1 MB of prose", ms.huge),
    Misbehaviour("error_in_200", "200 with an error object", lambda: ms.raw_body(ERROR_IN_200)),
    Misbehaviour("go_away", "drops the connection and stops listening", ms.go_away),
    Misbehaviour("out_of_bounds", "candidates outside the space", lambda: ms.ok(OUT_OF_BOUNDS)),
    Misbehaviour("prose", "valid JSON inside chatter", lambda: ms.ok(_prose)),
    Misbehaviour("trickle", "headers, then one byte every 0.5 s",
                 lambda: optional_behaviour("trickle", 0.5, 100_000, ms.reply_from_schema(0))),
    Misbehaviour("hang", "accepts and never answers", _hang),
)  # fmt: skip


def select(names: Sequence[str] | None) -> list[Misbehaviour]:
    """The behaviours named (all when None), in catalogue order.

    Raises:
        ValueError: an unknown name; the message lists the known ones.
    """
    if names is None:
        return list(BEHAVIOURS)
    known = {b.name for b in BEHAVIOURS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown behaviour(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return [b for b in BEHAVIOURS if b.name in names]


def run(
    ctx: Context, behaviours: Sequence[Misbehaviour], wall: float, grace: float, hard: float
) -> tuple[list[Row], dict[str, Any]]:
    results = [run_behaviour(ctx, b, wall, grace, hard) for b in behaviours]
    return [models_row(results, grace)], {"wall_time_s": wall, "grace_s": grace, "behaviours": results}


def run_behaviour(ctx: Context, misbehaviour: Misbehaviour, wall: float, grace: float, hard: float) -> dict[str, Any]:
    """One study against a server that answers every request with ``misbehaviour``."""
    result: dict[str, Any] = {"behaviour": misbehaviour.name, "does": misbehaviour.does}
    behaviour = misbehaviour.build()
    if behaviour is None:
        return {**result, "available": False, "held": None}
    name = f"models-{misbehaviour.name}"
    folder, mark = ctx.folder(name), ctx.mark(name)
    tmp = folder / "tmp"
    tmp.mkdir(exist_ok=True)
    (folder / "objective.py").write_text(OBJECTIVE)
    with ms.MisbehavingServer(default=behaviour) as server, Supervisor(mark) as supervisor:
        tables = {
            "study": {"name": "models", "storage": "sqlite:///study.db", "seed": 0},
            "space": SPACE,
            "proposer": {"kind": "llm", "model": server.spec(), "context": "a fault-injection test"},
            "objective": {"function": "objective:f"},
            "budget": {"trials": 100_000, "wall_time": f"{wall:g}s"},
        }
        (folder / "job.toml").write_text(job_toml(tables))
        launched_at = time.time()
        launched = supervisor.start(
            cli_argv("run", "job.toml"), cwd=folder, env=child_env(mark, tmp), log=folder / "run"
        )
        rc = launched.wait(wall + grace + hard)
        seconds = time.monotonic() - launched.started
        requests = len(server.requests)
    trials = read_trials(folder / "study.db")
    # The run's clock starts in optimize, after start-up and before its first proposal: a trial that started
    # more than the wall time after the first one started late for certain (the first proposal's time is
    # given away, so this can miss lateness, never invent it).
    first = min((t.started_at for t in trials if t.started_at is not None), default=launched_at)
    deadline = first + wall
    return {
        **result,
        "available": True,
        "rc": rc,
        "seconds": seconds,
        "held": rc == 0 and seconds <= wall + grace,
        "requests": requests,
        "trials": len(trials),
        "complete": sum(t.state == "complete" for t in trials),
        "started_late": sum(1 for t in trials if t.started_at is not None and t.started_at > deadline),
        "error": "" if rc == 0 else ("killed at the hard limit" if rc is None else launched.last_error_line()),
    }


def models_row(results: Sequence[dict[str, Any]], grace: float) -> Row:
    tried = [r for r in results if r["available"]]
    broken = [r for r in tried if not r["held"]]
    missing = [r["behaviour"] for r in results if not r["available"]]
    worst = max(tried, key=lambda r: r["seconds"], default=None)
    notes = [f"{r['behaviour']}: {_why(r)}" for r in broken]
    if worst is not None:
        notes.insert(0, f"slowest: {worst['behaviour']}")
    if missing:
        notes.append(f"behaviour not available: {', '.join(missing)}")
    return Row("models", f"run ends within wall time + {grace:g} s, exit 0", len(tried), len(broken),
               round(worst["seconds"], 1) if worst else None, "s", "; ".join(notes), "max")  # fmt: skip


def _why(result: dict[str, Any]) -> str:
    if result["rc"] is None:
        return f"killed after {result['seconds']:.0f} s"
    if result["rc"] != 0:
        return f"exit {result['rc']} ({result['error'][:80]})"
    late = f", {result['started_late']} trial(s) started after the wall time" if result["started_late"] else ""
    return f"{result['seconds']:.1f} s{late}"

"""secrets: plant secrets everywhere a run can see them, then count them wherever tunesmith writes.

The README promises that API keys never reach storage, logs or transcripts. Planted here:

* ``OPENAI_API_KEY`` (the model's key, ``api_key_env``), ``HF_TOKEN``, ``MY_SECRET``, ``DB_PASSWORD`` in the
  environment of every command;
* a model URL with credentials, ``http://alice:PASSWORD987@127.0.0.1:PORT/v1#m`` (the password, and
  ``base64("alice:PASSWORD987")`` as a Basic Authorization header carries it, are both searched for);
* a server that echoes the request headers, Authorization included, as its reply (``echo_headers``) on every
  other call, and answers properly on the others;
* an objective that prints its whole environment to stderr and fails every other trial (so the stderr tail
  becomes feedback, stored and shown to the model).

Then ``tunesmith run``, ``status``, ``status NAME``, ``status NAME --json`` and ``best NAME`` run, and every
planted value is counted in: the database files (the file, its WAL, any backup copy: raw bytes, freed pages
included), every command's stdout and stderr, any ``*.log`` file in the scenario's folder, and every request
the server received (bodies and headers, except ``Authorization``, where the key and the URL's credentials
belong). Target: 0 everywhere. One row per place; a case is a planted value.
"""

from __future__ import annotations

import base64
import sys
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from agent.testing import misbehaving_server as ms
from evals.reliability.common import Context, Row, Supervisor, child_env, cli_argv, job_toml
from evals.reliability.counting import add_counts, occurrences
from evals.reliability.models import optional_behaviour

USER, PASSWORD = "alice", "PASSWORD987"
RUN_TIMEOUT_S = 120.0
OBJECTIVE = """\
# The secrets scenario's objective: its whole environment on stderr; every other trial fails.
import json, os, sys

x, trial = float(sys.argv[1]), int(sys.argv[2])
for name, value in sorted(os.environ.items()):
    print(f"{name}={value}", file=sys.stderr)
if trial % 2:
    sys.exit(1)
print(json.dumps({"y": (x - 0.3) ** 2}))
"""


def planted_env() -> dict[str, str]:
    """The secret environment variables, with values unique to this run (so nothing older can match)."""
    tag = uuid.uuid4().hex[:16]
    return {
        "OPENAI_API_KEY": f"sk-plant-{tag}",
        "HF_TOKEN": f"hf_plant{tag}",
        "MY_SECRET": f"my-secret-plant-{tag}",
        "DB_PASSWORD": f"db-password-plant-{tag}",
    }


def needles(env: Mapping[str, str]) -> dict[str, str]:
    """Every value searched for, by the name the report gives it."""
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    return {**env, "URL password": PASSWORD, "URL Basic credential": basic}


def run(ctx: Context) -> tuple[list[Row], dict[str, Any]]:
    folder, mark = ctx.folder("secrets"), ctx.mark("secrets")
    tmp = folder / "tmp"
    tmp.mkdir(exist_ok=True)
    (folder / "objective.py").write_text(OBJECTIVE)
    env = planted_env()
    wanted = needles(env)
    echo = optional_behaviour("echo_headers")
    reply = ms.ok(ms.reply_from_schema(0))
    script = [echo, reply] * 50 if echo is not None else []
    with ms.MisbehavingServer(script, default=reply) as server, Supervisor(mark) as supervisor:
        _write_job(folder, f"http://{USER}:{PASSWORD}@127.0.0.1:{server.port}/v1#{server.model}")
        launched = []
        for i, args in enumerate(_commands(folder)):
            one = supervisor.start(cli_argv(*args), cwd=folder, env=child_env(mark, tmp, env), log=folder / f"cmd-{i}")
            launched.append((args, one, one.wait(RUN_TIMEOUT_S)))
        requests = server.requests
    places = {
        "database": _count_files(_database_files(folder), wanted),
        "CLI output": _count_files([p for _, one, _ in launched for p in (one.stdout, one.stderr)], wanted),
        "log files": _count_files(sorted(folder.rglob("*.log")), wanted),
        "model requests": _count_requests(requests, wanted),
    }
    details = {
        "planted": sorted(wanted),
        "echo_headers": echo is not None,
        "commands": [{"argv": args, "rc": rc} for args, _, rc in launched],
        "requests": len(requests),
        "found": places,
    }
    return rows_for(places, wanted, details), details


def _write_job(folder: Path, model: str) -> None:
    tables = {
        "study": {"name": "secrets", "storage": "sqlite:///study.db", "seed": 0},
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "proposer": {"kind": "llm", "model": model, "api_key_env": "OPENAI_API_KEY", "context": "planted secrets"},
        "objective": {"command": [sys.executable, "objective.py", "{x}", "{trial_number}"], "metric": "y"},
        "budget": {"trials": 8, "wall_time": "60s"},
    }
    (folder / "job.toml").write_text(job_toml(tables))


def _commands(folder: Path) -> list[list[str]]:
    url = f"sqlite:///{folder / 'study.db'}"
    return [
        ["run", "job.toml"],
        ["status", "--storage", url],
        ["status", "secrets", "--storage", url],
        ["status", "secrets", "--json", "--storage", url],
        ["best", "secrets", "--storage", url],
    ]


def _database_files(folder: Path) -> list[Path]:
    """The database, its WAL and shared memory, and any backup copy an upgrade made."""
    return sorted({*folder.glob("study.db*"), *folder.glob("*.bak")})


def _count_files(paths: Iterable[Path], wanted: Mapping[str, str]) -> dict[str, dict[str, int]]:
    """Occurrences of each value, by file name (files with none are left out)."""
    found = {}
    for path in paths:
        try:
            counts = {k: n for k, n in occurrences(path.read_bytes(), wanted).items() if n}
        except OSError:
            continue
        if counts:
            found[path.name] = counts
    return found


def _count_requests(requests: Iterable[ms.RecordedRequest], wanted: Mapping[str, str]) -> dict[str, dict[str, int]]:
    """Occurrences in the bodies and the headers other than Authorization, over every request."""
    bodies: dict[str, int] = {}
    headers: dict[str, int] = {}
    for request in requests:
        bodies = add_counts(bodies, occurrences(request.raw_body, wanted))
        shown = "\n".join(f"{k}: {v}" for k, v in request.headers.items() if k.lower() != "authorization")
        headers = add_counts(headers, occurrences(shown.encode(), wanted))
    found = {"bodies": {k: n for k, n in bodies.items() if n}, "headers": {k: n for k, n in headers.items() if n}}
    return {where: counts for where, counts in found.items() if counts}


def rows_for(
    places: Mapping[str, dict[str, dict[str, int]]], wanted: Mapping[str, str], details: Mapping[str, Any]
) -> list[Row]:
    """One row per place: a case per planted value, broken where it was found at least once."""
    rows = []
    for place, by_file in places.items():
        totals: dict[str, int] = {}
        for counts in by_file.values():
            totals = add_counts(totals, counts)
        notes = ", ".join(f"{name} x{n}" for name, n in totals.items())
        if by_file:
            notes += f" (in {', '.join(sorted(by_file))})"
        rows.append(Row("secrets", f"planted values in {place}", len(wanted), len(totals), sum(totals.values()),
                        "occurrences", notes))  # fmt: skip
    failed = [c for c in details["commands"] if c["rc"] != 0]
    if failed or not details["echo_headers"]:
        extra = [f"`{' '.join(c['argv'][:2])}` exited {c['rc']}" for c in failed]
        if not details["echo_headers"]:
            extra.append("echo_headers: behaviour not available")
        rows[0].notes = "; ".join([rows[0].notes, *extra]).strip("; ")
    return rows

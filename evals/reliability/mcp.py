"""The hostile-client scenario: ``tunesmith mcp`` driven by the real MCP client with arguments meant to stall it,
grow it, escape its folder or run what its command line did not allow.

Measured per call: whether the answer is a one-line tool error saying the expected thing, and how long it took;
for the whole session the server's peak memory (``VmHWM``); and afterwards whether a job that was not allowed
ran (it leaves a file when its module is imported) and whether any file appeared outside the server's folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from agent.testing.hostile import mcp_calls, mcp_specials
from evals.reliability.common import Context, Row, python_path

SCENARIO = "mcp"
#: What the issue asks of every hostile argument.
PROMPT_S = 2.0
SPACE: dict[str, object] = {"x": {"type": "float", "low": 0, "high": 1}}
#: A job outside what the server allows: importing its objective's module leaves a file beside it.
DANGER_JOB = (
    '[study]\nname = "danger"\n\n[space]\nx = { type = "float", low = 0, high = 1 }\n\n'
    '[objective]\nfunction = "danger:f"\n'
)
DANGER_MODULE = (
    'import pathlib\npathlib.Path(__file__).with_name("ran").write_text("imported")\n\ndef f(params):\n    return 0.0\n'
)


def run(ctx: Context) -> tuple[list[Row], dict[str, Any]]:
    import anyio

    folder = ctx.folder(SCENARIO)
    root, outside = folder / "root", folder / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "danger.toml").write_text(DANGER_JOB)
    (outside / "danger.py").write_text(DANGER_MODULE)
    specials = mcp_specials(root)
    calls = mcp_calls(specials, SPACE)
    before = _listing(folder, root)
    answers: list[dict[str, Any]] = []
    peak: dict[str, int] = {}

    async def session() -> None:
        async with _client(root, "--allow-jobs", str(specials), "--allow-jobs", "/dev") as client:
            await client.call_tool("create_study", {"name": "s", "space": SPACE})
            attempts = [
                ("load_study", {"job": str(outside / "danger.toml")}, "is not a job this server may run"),
                ("run_trials", {"study": "danger", "trials": 1}, "no study named 'danger'"),
                ("report", {"study": "s", "path": str(outside / "r.html")}, "is outside the server's folder"),
                *calls,
            ]
            for tool, arguments, expected in attempts:
                started = time.monotonic()
                result = await client.call_tool(tool, arguments)
                seconds = time.monotonic() - started
                message = result.content[0].text if result.content else ""  # type: ignore[union-attr]
                answers.append(
                    {
                        "call": f"{tool} {json.dumps(arguments)[:70]}",
                        "seconds": seconds,
                        "one_line_error": bool(result.is_error) and "\n" not in message.strip(),
                        "as_expected": expected in message,
                        "message": message[:200],
                    }
                )
            peak["kib"] = _server_peak_kib()

    anyio.run(session)
    after = _listing(folder, root)
    ran = (outside / "ran").exists()
    written = sorted(set(after) - set(before))
    slow = [a for a in answers if a["seconds"] >= PROMPT_S]
    wrong = [a for a in answers if not (a["one_line_error"] and a["as_expected"])]
    peak_mib = peak.get("kib", 0) / 1024
    rows = [
        Row(
            SCENARIO,
            "hostile calls answered with a one-line error",
            len(answers),
            len(wrong),
            len(wrong),
            "calls",
            "; ".join(a["call"] for a in wrong)[:300],
        ),
        Row(
            SCENARIO,
            f"hostile calls answered in under {PROMPT_S:g} s",
            len(answers),
            len(slow),
            max(a["seconds"] for a in answers),
            "s",
            combine="max",
        ),
        Row(SCENARIO, "commands run that the command line did not allow", 2, int(ran), int(ran), "jobs"),
        Row(
            SCENARIO,
            "files written outside the server's folder",
            1,
            int(bool(written)),
            len(written),
            "files",
            ", ".join(written)[:300],
        ),
        Row(
            SCENARIO,
            "server's peak memory under 1 GiB",
            1,
            int(peak_mib >= 1024),
            round(peak_mib),
            "MiB",
            combine="max",
        ),
    ]
    return rows, {"answers": answers, "peak_mib": peak_mib, "written_outside": written, "danger_ran": ran}


@contextlib.asynccontextmanager
async def _client(root: Path, *args: str) -> Any:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "agent.cli", "mcp", *args],
        env={"PYTHONPATH": python_path(), "NO_COLOR": "1"},
        cwd=root,
    )
    with (root.parent / "server.log").open("w") as errlog:
        async with stdio_client(server, errlog=errlog) as (read, write), ClientSession(read, write) as client:
            await client.initialize()
            yield client


def _server_peak_kib() -> int:
    """``VmHWM`` of the ``tunesmith mcp`` process this harness started: the most memory it held at once."""
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error, OSError):
            if "mcp" in child.cmdline() and "agent.cli" in child.cmdline():
                for line in Path(f"/proc/{child.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
    return 0


def _listing(folder: Path, root: Path) -> list[str]:
    """Every path under ``folder`` but those under the server's root (where it may write)."""
    return sorted(str(p) for p in _walk(folder) if not p.is_relative_to(root) and p.name != "server.log")


def _walk(folder: Path) -> Iterator[Path]:
    for base, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            yield Path(base, name)

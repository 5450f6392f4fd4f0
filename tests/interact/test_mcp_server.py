"""``tunesmith mcp`` driven by the real MCP client over stdio, as a chat assistant drives it: a server process
per test, its tools listed and called; what the tools say, what they refuse and how, and a protocol that an
objective printing to stdout (from Python, from fd 1, from a child process) does not break."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

pytest.importorskip("mcp")

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import CallToolResult, TextContent

from agent.interact.actions import ACTIONS, Outcome
from agent.interact.boundary import Boundary
from agent.interact.mcp_server import CreateArguments, Studies, Tool, answer
from tests.cli.helpers import REPO, tunesmith

JOB = """
[study]
name = "bowl"
seed = 0

[space]
x = { type = "float", low = 0, high = 1 }
opt = { type = "categorical", choices = ["a", "b"] }

[proposer]
kind = "random"

[objective]
function = "objective:f"
"""
OBJECTIVE = """
def f(params):
    return (params["x"] - 0.3) ** 2 + (params["opt"] == "b")
"""
NOISY_OBJECTIVE = """
import os, subprocess, sys

def f(params):
    print("printed by the objective")
    os.write(1, b"written to fd 1 by the objective\\n")
    subprocess.run([sys.executable, "-c", "print('printed by a child process')"], check=True)
    return params["x"]
"""
SPACE = {"x": {"type": "float", "low": 0, "high": 1}, "opt": {"type": "categorical", "choices": ["a", "b"]}}

Scenario = Callable[[ClientSession], Awaitable[None]]


def drive(folder: Path, scenario: Scenario, *args: str) -> str:
    """Start ``tunesmith mcp ARGS`` in ``folder``, connect the MCP client, play ``scenario``; returns the server's
    stderr. The client's environment is the SDK's minimal one, plus what finds this checkout."""
    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "agent.cli", "mcp", *args],
        env={"PYTHONPATH": str(REPO), "COLUMNS": "200", "NO_COLOR": "1"},
        cwd=folder,
    )

    async def session() -> None:
        with (folder / "server.log").open("w") as errlog:
            async with stdio_client(server, errlog=errlog) as (read, write), ClientSession(read, write) as client:
                await client.initialize()
                await scenario(client)

    anyio.run(session)
    return (folder / "server.log").read_text()


async def call(client: ClientSession, tool: str, **arguments: Any) -> CallToolResult:
    return await client.call_tool(tool, arguments)


async def ok(client: ClientSession, tool: str, **arguments: Any) -> tuple[str, Any]:
    """The text and the structured content of a call that must succeed."""
    result = await call(client, tool, **arguments)
    assert not result.is_error, text(result)
    return text(result), result.structured_content


async def refused(client: ClientSession, tool: str, **arguments: Any) -> str:
    """The message of a call that must fail as a tool error: one line, no traceback."""
    result = await call(client, tool, **arguments)
    message = text(result)
    assert result.is_error, message
    assert "\n" not in message.strip() and "Traceback" not in message
    return message


def text(result: CallToolResult) -> str:
    assert len(result.content) == 1 and isinstance(result.content[0], TextContent)
    return result.content[0].text


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "objective.py").write_text(OBJECTIVE)
    (tmp_path / "job.toml").write_text(JOB)
    return tmp_path


def test_a_job_loaded_runs_trials_and_its_best_is_read(folder: Path) -> None:
    async def scenario(client: ClientSession) -> None:
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
        expected = {"list_studies", "create_study", "load_study", "ask", "tell", "run_trials", "show_trial"}
        assert expected | (set(ACTIONS) - {"run", "show"}) == set(listed)
        assert listed["narrow"].input_schema["required"] == ["param", "low", "high", "study"]
        assert listed["status"].annotations is not None and listed["status"].annotations.read_only_hint

        said, data = await ok(client, "load_study", job="job.toml")
        assert said == "Study 'bowl' is open (0 trials); run_trials evaluates its job's objective.\n"
        assert data["can_run"] is True
        said, data = await ok(client, "run_trials", study="bowl", trials=5)
        assert data == {"trials": 5, "stopped": "n_trials"} and said.count("complete") == 5
        _, data = await ok(client, "trials", study="bowl")
        values = {t["number"]: t["value"] for t in data["trials"]}
        said, best = await ok(client, "best", study="bowl")
        assert best["value"] == min(values.values()) and values[best["number"]] == best["value"]
        assert set(best["params"]) == {"x", "opt"}
        assert said.startswith(f"Best trial #{best['number']}: value ")
        said, status = await ok(client, "status", study="bowl")
        assert "5 trials (5 complete)" in said and status["trials"] == 5
        said, data = await ok(client, "list_studies")
        assert [s["name"] for s in data["studies"]] == ["bowl"]
        assert data["open"] == {"bowl": {"job": str(folder / "job.toml")}}

    drive(folder, scenario, "--allow-jobs", ".")


def test_a_study_created_here_is_asked_told_and_steered(tmp_path: Path) -> None:
    async def scenario(client: ClientSession) -> None:
        said, data = await ok(client, "create_study", name="manual", space=SPACE, direction="maximize", seed=1)
        assert data["can_run"] is False and "ask for points and tell results" in said
        said, asked = await ok(client, "ask", study="manual")
        assert set(asked["params"]) == {"x", "opt"} and said.startswith(f"Trial {asked['number']}: evaluate {{")
        said, told = await ok(client, "tell", study="manual", number=asked["number"], value=0.75)
        assert said.startswith(f"Recorded: trial {asked['number']} complete  0.75 ") and told["value"] == 0.75
        _, failing = await ok(client, "ask", study="manual")
        _, told = await ok(client, "tell", study="manual", number=failing["number"], error="out of memory")
        assert told["state"] == "failed" and told["error"] == "out of memory"
        _, best = await ok(client, "best", study="manual")
        assert (best["number"], best["value"], best["params"]) == (asked["number"], 0.75, asked["params"])

        said, narrowed = await ok(client, "narrow", study="manual", param="x", low=0.25, high=0.3)
        assert said.startswith("Done: ") and narrowed["author"] == "mcp"
        await ok(client, "fix", study="manual", param="opt", value="b")
        for _ in range(3):
            _, asked = await ok(client, "ask", study="manual")
            assert 0.25 <= asked["params"]["x"] <= 0.3 and asked["params"]["opt"] == "b"
            await ok(client, "tell", study="manual", number=asked["number"], value=asked["params"]["x"])
        await ok(client, "note", study="manual", text="x near 0.27 looked best on paper")
        said, space = await ok(client, "space", study="manual")
        assert "Note: x near 0.27 looked best on paper" in said and space["pinned"] == {"opt": "b"}
        await ok(client, "free", study="manual", param="opt")
        _, space = await ok(client, "space", study="manual")
        assert space["pinned"] == {}

    drive(tmp_path, scenario)
    assert (tmp_path / "tunesmith.db").is_file()  # --storage's default: here


def test_mistakes_are_tool_errors_that_say_what_to_do(folder: Path) -> None:
    async def scenario(client: ClientSession) -> None:
        await ok(client, "create_study", name="bowl", space=SPACE)
        assert (await refused(client, "status", study="ghost")).startswith(
            f"no study named 'ghost' in sqlite:///{folder / 'tunesmith.db'} (studies there: bowl)"
        )
        assert await refused(client, "narrow", study="bowl", param="y", low=0, high=1) == (
            "y: not a parameter of this study (parameters: x, opt)"
        )
        assert await refused(client, "narrow", study="bowl", low="low") == (
            "narrow: param: missing; low: Input should be a valid number, unable to parse string as a number; "
            "high: missing"
        )
        assert await refused(client, "best", study="bowl") == "study 'bowl' has no complete trial yet"
        said, data = await ok(client, "load_study", name="bowl", storage="tunesmith.db")
        assert data["can_run"] is False and "no job file" in said
        message = await refused(client, "run_trials", study="bowl", trials=2)
        assert message.startswith("study 'bowl' was opened by name, so its objective is unknown")
        space = {"x": {"type": "flot", "low": 0, "high": 1}}
        assert (await refused(client, "create_study", name="typo", space=space)).startswith(
            'space.x.type: expected one of "float", "int"'
        )
        assert (await refused(client, "create_study", name="bowl", space=SPACE)).startswith("a study named 'bowl'")
        assert await refused(client, "tell", study="bowl", number=0, value=1.0, error="both") == (
            "tell: give exactly one of value, metrics or error"
        )
        assert (
            await refused(client, "load_study") == "load_study: give either job (a job file) or name (a stored study)"
        )
        assert (await refused(client, "status")) == "status: study: missing"
        assert (await refused(client, "forecast", study="bowl")).startswith("no tool 'forecast'; the tools: ")

    drive(folder, scenario)


def test_an_objective_printing_to_stdout_does_not_break_the_protocol(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (folder / "objective.py").write_text(NOISY_OBJECTIVE)

    async def scenario(client: ClientSession) -> None:
        said, _ = await ok(client, "run_trials", study="bowl", trials=3)  # opened by the command line
        assert said.count("complete") == 3
        said, _ = await ok(client, "status", study="bowl")
        assert "3 trials (3 complete)" in said

    with caplog.at_level(logging.WARNING, logger="mcp"):
        stderr = drive(folder, scenario, "job.toml")
    assert not [r for r in caplog.records if "parse" in r.getMessage()], "the server wrote a line that is not JSON-RPC"
    for line in ("printed by the objective", "written to fd 1 by the objective", "printed by a child process"):
        assert stderr.count(line) == 3, stderr


def test_an_unexpected_exception_is_an_internal_error_and_its_traceback_goes_to_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(_: Any) -> Outcome:
        raise KeyError("surprise")

    tool = Tool("broken", "fails", ACTIONS["status"].arguments, broken, True)
    with caplog.at_level(logging.ERROR, logger="agent.interact.mcp_server"):
        result = answer(tool, {})
    assert result.is_error and text(result) == "internal error: KeyError: 'surprise'"
    assert caplog.records[0].exc_info is not None


def test_a_study_of_the_default_storage_is_opened_by_name_on_first_use(tmp_path: Path) -> None:
    boundary = Boundary.of(tmp_path, f"sqlite:///{tmp_path / 'x.db'}")
    studies = Studies(boundary)
    created = studies.create_study(CreateArguments(name="s", space=SPACE))
    assert created.data["can_run"] is False
    studies.close()
    again = Studies(boundary)
    assert again.perform(ACTIONS["status"], "s", ACTIONS["status"].validate({})).data["name"] == "s"
    again.close()


def test_the_command_says_how_to_use_it_and_what_to_install(tmp_path: Path) -> None:
    helped = tunesmith("mcp", "--help", cwd=tmp_path)
    assert helped.code == 0 and "JOB" in helped.stdout and "--storage" in helped.stdout
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "mcp.py").write_text('raise ImportError("mcp is blocked in this test")\n')
    pythonpath = os.pathsep.join([str(blocker), str(REPO)])
    missing = tunesmith("mcp", "job.toml", cwd=tmp_path, env={"PYTHONPATH": pythonpath})
    assert missing.code == 1
    assert missing.stderr.strip().splitlines() == [
        "error: tunesmith mcp needs the mcp package (mcp is blocked in this test); install it with: "
        'pip install "tunesmith[mcp]"'
    ]
    broken = tunesmith("mcp", "nothing.toml", cwd=tmp_path)
    assert broken.code == 2 and broken.stderr.startswith("error: ") and "Traceback" not in broken.stderr
    assert not (tmp_path / "tunesmith.db").exists()


def test_the_command_line_does_not_import_the_sdk_until_the_server_starts() -> None:
    code = (
        "import argparse, sys\n"
        "from agent.cli import mcp\n"
        "mcp.register(argparse.ArgumentParser().add_subparsers())\n"
        "assert 'mcp' not in sys.modules, 'imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)

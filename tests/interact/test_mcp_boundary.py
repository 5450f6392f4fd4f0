"""What a hostile MCP client cannot make ``tunesmith mcp`` do, tried as an attacker would: through the real MCP
client, against the command as a subprocess. It cannot run a job file the command line did not allow, write
or create a file outside the server's folder, overwrite a file that is not a report, stall or grow the server
with a special or huge file; and leaving in the middle of run_trials leaves no trial running, no process."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

pytest.importorskip("mcp")

from mcp import ClientSession

from agent.testing.hostile import mcp_calls, mcp_specials
from tests.interact.test_mcp_server import JOB, OBJECTIVE, SPACE, call, drive, ok, refused, text

#: A job whose objective, if it ever ran, would leave a mark: at import (a function) or as a command.
DANGER = """
[study]
name = "danger"

[space]
x = { type = "float", low = 0, high = 1 }

[objective]
function = "danger:f"
"""
DANGER_MODULE = """
import pathlib
pathlib.Path(__file__).with_name("ran").write_text("imported")

def f(params):
    return 0.0
"""
SLOW = """
[study]
name = "slow"

[space]
x = { type = "float", low = 0, high = 1 }

[proposer]
kind = "random"

[objective]
command = ["sh", "slow.sh"]
"""
#: The probe's objective: a shell whose ``sleep`` is its child, the server's grandchild, in a session of its own
#: (out of reach of the client's kill of the server's process group: only the server can end it).
SLOW_SCRIPT = """
echo $PPID > server.pid
setsid sleep 300 &
echo $! > sleep.pid
wait
"""
#: A hostile argument is answered within this long (the one-line error, not a read of what it names).
PROMPT_S = 30.0  # a bounded answer takes milliseconds, an unbounded read minutes; 2 s is the target, not a test bound


def until(condition: Callable[[], bool], what: str, within_s: float = 60.0) -> None:
    """Wait for ``condition`` (a generous deadline: this waits on an event, it does not time one)."""
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.05)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead, merely not reaped yet
        return f.read().rsplit(")", 1)[1].split()[0] == "Z"


def test_a_job_not_allowed_on_the_command_line_is_neither_loaded_nor_run(tmp_path: Path) -> None:
    (tmp_path / "objective.py").write_text(OBJECTIVE)
    (tmp_path / "job.toml").write_text(JOB)
    hostile = tmp_path / "elsewhere"
    hostile.mkdir()
    (hostile / "danger.toml").write_text(DANGER)
    (hostile / "danger.py").write_text(DANGER_MODULE)
    allowed = tmp_path / "jobs"
    allowed.mkdir()
    (allowed / "link.toml").symlink_to(hostile / "danger.toml")  # inside the allowed folder, pointing out

    async def scenario(client: ClientSession) -> None:
        for given in (str(hostile / "danger.toml"), "elsewhere/danger.toml", "jobs/../elsewhere/danger.toml"):
            message = await refused(client, "load_study", job=given)
            assert message.startswith(f"job: {given} is not a job this server may run"), message
            assert f"--allow-jobs {hostile}" in message and f"tunesmith mcp {hostile / 'danger.toml'}" in message
        assert (await refused(client, "load_study", job="jobs/link.toml")).startswith("job: jobs/link.toml is not")
        assert (await refused(client, "run_trials", study="danger", trials=1)).startswith("no study named 'danger'")
        said, _ = await ok(client, "load_study", job=str(tmp_path / "job.toml"))  # named on the command line
        assert "run_trials evaluates" in said
        await ok(client, "run_trials", study="bowl", trials=1)
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert "runs the job's command (or function) on this host" in (listed["run_trials"].description or "")
        assert "--allow-jobs" in (listed["load_study"].description or "")

    drive(tmp_path, scenario, "job.toml", "--allow-jobs", "jobs")
    assert not (hostile / "ran").exists()


def test_a_job_under_an_allowed_folder_loads(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs" / "deep"
    jobs.mkdir(parents=True)
    (jobs / "objective.py").write_text(OBJECTIVE)
    (jobs / "job.toml").write_text(JOB)

    async def scenario(client: ClientSession) -> None:
        _, data = await ok(client, "load_study", job="jobs/deep/job.toml")
        assert data["can_run"] is True

    drive(tmp_path, scenario, "--allow-jobs", "jobs")


def test_paths_and_storages_a_client_names_stay_inside_the_root(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "important.conf").write_text("keep me\n")
    (root / "notes.txt").write_text("keep me too\n")
    (root / "page.html").write_text("<html>someone's page</html>\n")
    (root / "escape.html").symlink_to(outside / "x.html")
    (root / "escape.db").symlink_to(outside / "x.db")
    before = {p: p.read_bytes() for p in [*outside.iterdir(), root / "notes.txt", root / "page.html"] if p.is_file()}

    async def scenario(client: ClientSession) -> None:
        await ok(client, "create_study", name="s", space=SPACE)
        for path in (str(outside / "important.conf"), "../outside/important.conf", "escape.html"):
            assert "is outside the server's folder" in await refused(client, "report", study="s", path=path)
        for path in ("notes.txt", "page.sh"):
            assert "is not an .html file" in await refused(client, "report", study="s", path=path)
        message = await refused(client, "report", study="s", path="page.html")
        assert message == (
            "path: page.html exists and is not a tunesmith report, so it is not overwritten; give a new file's "
            "name, or remove that file first"
        )
        said, data = await ok(client, "report", study="s", path="reports/r.html")
        assert data["path"] == str(root / "reports" / "r.html") and said.startswith("Wrote ")
        await ok(client, "report", study="s", path="reports/r.html")  # ours: written over
        for storage in (f"sqlite:///{outside / 'x.db'}", str(outside / "x.db"), "../outside/x.db", "escape.db"):
            message = await refused(client, "create_study", name="t", space=SPACE, storage=storage)
            assert "is outside the server's folder" in message, message
        message = await refused(client, "list_studies", storage="postgresql://mallory:secret@db.example/x")
        assert "is not this server's storage" in message and "secret" not in message
        assert "is not this server's storage" in await refused(
            client, "list_studies", storage=f"sqlite:///{outside / 'x.db'}?mode=rwc&uri=true"
        )
        assert "does not end in .db" in await refused(client, "create_study", name="t", space=SPACE, storage="a.txt")
        (root / "fake.db").write_text("not a database\n")
        message = await refused(client, "create_study", name="t", space=SPACE, storage="fake.db")
        assert message == "storage: fake.db exists and is not a SQLite database; give a new file's name"
        _, data = await ok(client, "create_study", name="t", space=SPACE, storage="sqlite:///more/t.db")
        assert data["storage"] == f"sqlite:///{root / 'more' / 't.db'}"
        await ok(client, "load_study", name="t", storage="more/t.db")

    drive(root, scenario)
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in outside.iterdir()) == ["important.conf"]
    assert '<meta name="generator" content="tunesmith' in (root / "reports" / "r.html").read_text()


def test_hostile_arguments_are_answered_at_once_in_one_line(tmp_path: Path) -> None:
    specials = mcp_specials(tmp_path)
    hostile = mcp_calls(specials, SPACE)
    took: dict[str, float] = {}

    async def scenario(client: ClientSession) -> None:
        await ok(client, "create_study", name="s", space=SPACE)
        for tool, arguments, expected in hostile:
            started = time.monotonic()
            result = await call(client, tool, **arguments)
            took[f"{tool} {json.dumps(arguments)[:60]}"] = time.monotonic() - started
            message = text(result)
            assert result.is_error and "\n" not in message.strip() and "Traceback" not in message, message
            assert expected in message, message
            assert len(message) < 4 * 4096 + 1000, message[:200]  # what it quotes is bounded

    drive(tmp_path, scenario, "--allow-jobs", str(specials), "--allow-jobs", "/dev")
    slow = {call: seconds for call, seconds in took.items() if seconds >= PROMPT_S}
    assert not slow, slow


def _slow_job(folder: Path) -> None:
    (folder / "slow.toml").write_text(SLOW)
    (folder / "slow.sh").write_text(SLOW_SCRIPT)


def _left_behind(folder: Path) -> tuple[list[tuple[str, int]], list[int]]:
    """The state and flag of every trial of the slow study, and which of its processes still live."""
    with sqlite3.connect(folder / "tunesmith.db") as db:
        trials = db.execute("SELECT state, interrupted FROM trials ORDER BY number").fetchall()
    pids = [int((folder / name).read_text()) for name in ("server.pid", "sleep.pid")]
    return trials, [pid for pid in pids if not gone(pid)]


def test_a_client_leaving_during_run_trials_leaves_no_running_trial_and_no_process(tmp_path: Path) -> None:
    _slow_job(tmp_path)

    async def scenario(client: ClientSession) -> None:
        async def run() -> None:
            await call(client, "run_trials", study="slow", trials=1)

        async with anyio.create_task_group() as group:
            group.start_soon(run)
            await anyio.to_thread.run_sync(until, lambda: (tmp_path / "sleep.pid").is_file(), "the trial's sleep")
            group.cancel_scope.cancel()  # the client leaves in the middle of the call

    log = drive(tmp_path, scenario, "slow.toml")
    assert "the client closed its end of the pipe: interrupting the 1 calls running" in log, log
    until(lambda: not _left_behind(tmp_path)[1], "the server and the trial's processes to end", within_s=30)
    assert _left_behind(tmp_path)[0] == [("failed", 1)]


def test_sigterm_during_run_trials_leaves_no_running_trial_and_no_process(tmp_path: Path) -> None:
    _slow_job(tmp_path)

    async def scenario(client: ClientSession) -> None:
        async with anyio.create_task_group() as group:

            async def run() -> None:
                with pytest.raises(Exception):  # noqa: B017 - the SDK's own error for a connection that closed
                    await call(client, "run_trials", study="slow", trials=1)

            group.start_soon(run)
            await anyio.to_thread.run_sync(until, lambda: (tmp_path / "sleep.pid").is_file(), "the trial's sleep")
            os.kill(int((tmp_path / "server.pid").read_text()), signal.SIGTERM)

    log = drive(tmp_path, scenario, "slow.toml")
    assert "SIGTERM: interrupting the 1 calls running" in log, log
    until(lambda: not _left_behind(tmp_path)[1], "the server and the trial's processes to end", within_s=30)
    assert _left_behind(tmp_path)[0] == [("failed", 1)]

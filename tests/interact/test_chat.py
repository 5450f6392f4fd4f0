"""``tunesmith chat`` driven through a pseudo-terminal, as a person types: prompt_toolkit's line editor, Tab
completion, the history file, Ctrl-C; and with piped input, a model (a real OpenAI-compatible server on
127.0.0.1) whose proposed actions are confirmed or declined."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest

from agent.interact.chat import MAX_LINE
from agent.study import load_study
from agent.testing.misbehaving_server import MisbehavingServer, ok, tool_calls
from agent.trial import TrialState
from tests.cli.helpers import REPO

PROMPT = "tunesmith>"
JOB = """
[study]
name = "demo"
direction = "minimize"
seed = 3

[space]
x = { type = "float", low = -5.0, high = 5.0 }
n = { type = "int", low = 1, high = 10 }
opt = { type = "categorical", choices = ["adam", "sgd"] }

[objective]
function = "objective:f"

[proposer]
kind = "random"
"""
OBJECTIVE = """
import pathlib, time

def f(params):
    if pathlib.Path("slow").exists():
        pathlib.Path("started").touch()
        time.sleep(120)
    return (params["x"] - 1) ** 2 + params["n"] + (params["opt"] == "sgd")
"""


@pytest.fixture
def job(tmp_path: Path) -> Path:
    (tmp_path / "objective.py").write_text(OBJECTIVE)
    path = tmp_path / "job.toml"
    path.write_text(JOB)
    return path


def _environment(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "HOME": str(home),
        "XDG_STATE_HOME": str(home / "state"),
        "TERM": "xterm-256color",
        "NO_COLOR": "1",
        "PROMPT_TOOLKIT_NO_CPR": "1",  # no cursor-position query a test would have to answer
    }


def _spawn(job: Path, *args: str) -> pexpect.spawn:
    child = pexpect.spawn(
        sys.executable,
        ["-m", "agent.cli", "chat", str(job), *args],
        cwd=str(job.parent),
        env=_environment(job.parent),
        encoding="utf-8",
        dimensions=(50, 200),
        timeout=60,
    )
    child.expect(PROMPT)
    return child


def _shown(child: pexpect.spawn, text: str) -> None:
    """Wait for ``text`` on the screen: the line editor may redraw it in pieces, with escape codes between."""
    codes = r"(?:\x1b\[[0-9;?]*[A-Za-z])*"
    child.expect(codes.join(re.escape(c) for c in text))


def _command(child: pexpect.spawn, line: str, *expected: str) -> None:
    child.sendline(line)
    for text in expected:
        child.expect_exact(text)
    child.expect(PROMPT)


def _quit(child: pexpect.spawn) -> None:
    child.sendline("/quit")
    child.expect_exact("Left the chat")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_run_narrow_pin_quit_and_resume_through_a_terminal(job: Path) -> None:
    child = _spawn(job, "--no-model")
    _command(child, "/run 4", "Ran 4 trials")
    child.send("/nar\t")  # Tab completes the command...
    _shown(child, "/narrow")
    child.send(" x 0 1\r")
    child.expect_exact("Done: x narrowed to [0.0, 1.0]")
    child.expect(PROMPT)
    child.send("/fix opt=ad\t")  # ... and a categorical parameter's choice
    _shown(child, "opt=adam")
    child.send("\r")
    child.expect_exact("opt pinned at 'adam'")
    child.expect(PROMPT)
    _command(child, "/space", "x: float in [0.0, 1.0] (steered", "opt: pinned at 'adam'")
    _command(child, "/run 4", "Ran 4 trials")
    _quit(child)

    later = load_study("demo", f"sqlite:///{job.parent / 'tunesmith.db'}").trials[4:]
    assert len(later) == 4
    assert all(0.0 <= t.params["x"] <= 1.0 and t.params["opt"] == "adam" for t in later)

    child = _spawn(job, "--no-model")  # resume: the steering is still in force
    assert "Study demo: 8 trials" in child.before
    assert "x narrowed to [0.0, 1.0]" in child.before
    child.send("\x1b[A")  # the up arrow brings back the last line typed, from the history file
    _shown(child, "/quit")
    child.send("\x15")  # Ctrl-U clears it
    _command(child, "/free opt", "opt freed")
    _command(child, "/undo", "Undone: opt freed")
    _command(child, "/show 5", "Trial 5 of demo", "steering in force when it started")
    _command(child, "/run 2", "Ran 2 trials")
    _quit(child)
    resumed = load_study("demo", f"sqlite:///{job.parent / 'tunesmith.db'}").trials[8:]
    assert len(resumed) == 2 and all(0.0 <= t.params["x"] <= 1.0 and t.params["opt"] == "adam" for t in resumed)


def test_ctrl_c_during_run_stops_the_trial_and_the_chat_goes_on(job: Path) -> None:
    child = _spawn(job, "--no-model")
    _command(child, "/run 2", "Ran 2 trials")
    (job.parent / "slow").touch()
    child.sendline("/run 3")
    deadline = time.monotonic() + 60
    while not (job.parent / "started").exists():
        assert time.monotonic() < deadline, "the slow trial never started"
        time.sleep(0.1)
    child.sendintr()
    child.expect_exact("Interrupted: the running trials were stopped and marked interrupted")
    child.expect(PROMPT)
    (job.parent / "slow").unlink()
    _command(child, "/run 1", "Ran 1 trials")
    _command(child, "/status", "4 trials")
    _quit(child)
    trials = load_study("demo", f"sqlite:///{job.parent / 'tunesmith.db'}").trials
    assert [t.interrupted for t in trials] == [False, False, True, False]
    assert trials[3].state is TrialState.COMPLETE


REFUSED = f"A line may hold {MAX_LINE:,} characters and this one is longer: nothing was done."


def test_a_line_pasted_without_bracketed_paste_is_kept_only_to_the_limit_and_refused(job: Path) -> None:
    # 100,000 keys, as a terminal without bracketed paste delivers a paste: each used to save the whole line
    # for undo (4.9 GB, 50 s); now the waiting keys go in at once and nothing past the limit is kept.
    child = _spawn(job, "--no-model")
    pasted = "/note " + "n" * 100_000
    for start in range(0, len(pasted), 4096):
        child.send(pasted[start : start + 4096])
    child.send("\r")
    child.expect_exact(REFUSED)
    child.expect(PROMPT)
    _command(child, "/space", "Search space of demo")  # the chat goes on
    _quit(child)
    history = (job.parent / "state" / "tunesmith" / "chat-history").read_text()
    kept = [line[1:] for line in history.splitlines() if line.startswith("+")]
    assert kept[0] == pasted[: MAX_LINE + 1], "the line held one character past the limit, and no more"
    assert load_study("demo", f"sqlite:///{job.parent / 'tunesmith.db'}").steering.notes == ()


def test_a_run_of_typing_is_one_undo_step(job: Path) -> None:
    # prompt_toolkit's own binding saved the line for undo before every key: Ctrl-_ took back one character.
    child = _spawn(job, "--no-model")
    for key in "/bogus":  # one key at a time, each shown before the next is typed, as a person types
        child.send(key)
        child.expect_exact(key)
    child.send("\x1f")  # Ctrl-_: undo
    child.sendline("/space")
    assert child.expect_exact(["Unknown command", "Search space of demo"]) == 1, "the undo left part of /bogus"
    child.expect(PROMPT)
    _quit(child)


def test_a_piped_line_over_the_limit_is_refused_and_the_chat_goes_on(job: Path) -> None:
    result = _chat(job, ["/note " + "n" * MAX_LINE, "/note short", "/space"])
    assert result.returncode == 0, result.stderr
    assert REFUSED in result.stdout and "Note: short" in result.stdout


def _chat(job: Path, lines: list[str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "chat", str(job), *args],
        cwd=job.parent,
        env={**_environment(job.parent), "TERM": "dumb", "COLUMNS": "200"},
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_models_actions_are_shown_and_done_only_when_confirmed(job: Path) -> None:
    script = [
        tool_calls([("narrow", {"param": "x", "low": 0, "high": 2})], content="x near 1 scores best; narrowing."),
        tool_calls([("fix", {"param": "opt", "value": "sgd"}), ("trials", {"last": 2})], content="Pinning."),
        ok("Trial 1 is the best so far."),
    ]
    with MisbehavingServer(script) as server:
        result = _chat(
            job,
            ["/run 2", "narrow x please", "y", "and pin sgd", "n", "which is best?", "/quit"],
            "--model",
            server.spec(),
        )
        requests = server.requests
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "x near 1 scores best; narrowing." in out
    assert "The model proposes narrow(param='x', low=0.0, high=2.0)" in out
    assert "Done: x narrowed to [0.0, 2.0]" in out
    assert "The model proposes fix(param='opt', value='sgd')" in out and "Not done." in out
    assert "demo: 2 trials" in out  # trials(last=2) only reads: done without asking
    assert "Trial 1 is the best so far." in out
    study = load_study("demo", f"sqlite:///{job.parent / 'tunesmith.db'}")
    assert study.pinned == {} and study.steering.space["x"].describe() == "float in [0.0, 2.0]"
    # Every turn offered the actions as tools, showed the study, and told the model what came of its proposals.
    assert all({t["function"]["name"] for t in r.body["tools"]} >= {"narrow", "fix", "run"} for r in requests)
    assert "Search space of demo" in requests[0].messages[0]["content"]
    assert "narrow(param='x', low=0.0, high=2.0) was done" in requests[1].messages[-1]["content"]
    assert "declined fix(param='opt', value='sgd')" in requests[2].messages[-1]["content"]
    assert [c.purpose for c in study.llm_calls] == ["chat"] * 3


def test_without_a_model_commands_work_and_sentences_say_how_to_get_one(job: Path) -> None:
    result = _chat(job, ["hello", "/run 1", "/narrow x 9 1", "/fix nope=1", "/bogus", "/trials", "/report r.html"])
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "start the chat with --model SPEC" in out
    assert "Ran 1 trials" in out
    assert "low (9.0) must be below high (1.0)" in out
    assert "nope: not a parameter of this study (parameters: x, n, opt)" in out
    assert "Unknown command /bogus" in out
    assert "Wrote " in out and (job.parent / "r.html").is_file()
    assert "Traceback" not in out + result.stderr


def test_a_chat_and_a_batch_run_share_one_study(job: Path) -> None:
    chat = _spawn(job, "--no-model")
    _command(chat, "/narrow x -1 0", "Done: x narrowed")
    batch = subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", str(job), "--more", "3"],
        env=_environment(job.parent),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert batch.returncode == 0, batch.stderr
    _command(chat, "/trials", "demo: 3 trials")  # the batch run's trials, seen from the chat
    _command(chat, "/run 2", "Ran 2 trials")
    _quit(chat)
    trials = load_study("demo", f"sqlite:///{job.parent / 'tunesmith.db'}").trials
    assert len(trials) == 5 and all(-1.0 <= t.params["x"] <= 0.0 for t in trials)  # the batch run followed the chat


@pytest.mark.slow
def test_a_chat_with_the_local_model_answers_in_the_json_action_format(job: Path) -> None:
    question = "Which trial is the best, and what would you try next?"
    result = _chat(job, ["/run 3", question, "/quit"], "--model", "local", timeout=600)  # /quit declines any proposal
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    [call] = load_study("demo", f"sqlite:///{job.parent / 'tunesmith.db'}").llm_calls
    assert call.purpose == "chat" and call.mode == "json_schema", "the local model is held to the JSON format"
    if call.error is None:  # a readable reply: what it said is shown
        assert call.parsed["reply"].strip()[:40] in result.stdout
    else:
        assert "could not be read" in result.stdout

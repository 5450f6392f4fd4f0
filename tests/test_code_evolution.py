"""Code evolution end to end, through ``tunesmith run``: a model behind a real OpenAI-compatible server on 127.0.0.1
(or the real local model) edits a marked region, each candidate runs in the sandbox after its test stage, the
archive survives ``kill -9``, and ``best --write-to`` / ``show`` give the program back."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agent.evolution.archive import Archive
from agent.storage import open_storage
from agent.testing.misbehaving_server import MisbehavingServer, ok
from tests.cli.helpers import REPO, tunesmith

pytestmark = pytest.mark.slow  # real runs: the CLI, the sandbox, a model

SLOW = "# tunesmith: begin f\ndef f(x):\n    return x + 1\n# tunesmith: end f\n"
# The evaluators are trusted: they call the candidate's f() in its sandbox, through tools.candidate.
CALL_F = (
    "from tools.candidate import Candidate\n"
    "with Candidate.from_env().functions('slow') as slow:\n"
    "    f0 = slow.call('f', 0).value\n"
)
CHECK = CALL_F + "import sys\nsys.exit(0 if f0 >= 1 else 1)\n"
SCORE = CALL_F + "import json, time\ntime.sleep(0.5)\nprint(json.dumps({'score': f0}))\n"
JOB = """\
[study]
name = "count-up"
direction = "maximize"
seed = 0

[space]
program = {{ type = "code", file = "slow.py", region = "f" }}

[objective]
command = ["{{python}}", "score.py"]
metric = "score"
cascade = [{{ name = "tests", command = ["{{python}}", "check.py"], timeout = "30s" }}]

[proposer]
kind = "evolve"
model = "{model}"
features = ["code_length"]

[budget]
trials = 6
"""


def count_up(body: dict[str, Any]) -> str:
    """The model: raise the constant of the program it is shown by one, as a SEARCH/REPLACE edit."""
    shown = body["messages"][-1]["content"]
    constant = int(re.search(r"return x \+ (\d+)", shown).group(1))  # type: ignore[union-attr]
    return (
        f"Add one more.\n<<<<<<< SEARCH\n    return x + {constant}\n=======\n"
        f"    return x + {constant + 1}\n>>>>>>> REPLACE\n"
    )


def project(folder: Path, model: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "slow.py").write_text(SLOW)
    (folder / "check.py").write_text(CHECK)
    (folder / "score.py").write_text(SCORE)
    (folder / "job.toml").write_text(JOB.format(model=model))
    return folder


def trials_of(folder: Path, *, started: bool = True) -> list[Any]:
    """The finished trials of the folder's study; with ``started=False`` none while the run has not yet made
    its database or its study (a poll that begins with the run)."""
    if not started and not (folder / "tunesmith.db").exists():
        return []
    storage = open_storage(f"sqlite:///{folder / 'tunesmith.db'}", create=False)
    study = storage.get_study("count-up")
    if study is None and not started:
        return []
    assert study is not None
    return [t for t in storage.trials(study.id) if t.state.is_finished]


def test_the_archive_survives_kill_9_and_the_run_resumes_from_it(tmp_path: Path) -> None:
    with MisbehavingServer(default=ok(count_up)) as server:
        folder = project(tmp_path / "proj", server.spec())
        env = {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}
        run = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", "job.toml"],
            cwd=folder,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while len(trials_of(folder, started=False)) < 3:
            assert run.poll() is None and time.monotonic() < deadline, "the run ended or stalled before the kill"
            time.sleep(0.2)
        run.send_signal(signal.SIGKILL)
        run.wait()
        before = trials_of(folder)
        best_before = Archive.from_trials(before, code_param="program", direction="maximize").best()[0]
        assert (folder / "slow.py").read_text() == SLOW, "candidates never touch the user's file"
        resumed = tunesmith("run", "job.toml", cwd=folder)
    assert resumed.code == 0, resumed.stderr
    after = trials_of(folder)
    assert len([t for t in after if not t.interrupted]) == 6
    known = {t.number for t in before}
    first_new = min((t for t in after if t.number not in known and t.parents), key=lambda t: t.number)
    assert set(first_new.parents) <= known, "the resumed run edits a program of the archive built before the kill"
    best_after = Archive.from_trials(after, code_param="program", direction="maximize").best()[0]
    assert best_after.value is not None and best_before.value is not None
    assert best_after.value > best_before.value, "and improves on it"


def test_best_write_to_puts_the_program_in_its_region_and_show_gives_the_diff(tmp_path: Path) -> None:
    with MisbehavingServer(default=ok(count_up)) as server:
        folder = project(tmp_path, server.spec())
        result = tunesmith("run", "job.toml", "--trials", "3", cwd=folder)
    assert result.code == 0, result.stderr
    best = json.loads(tunesmith("best", "job.toml", cwd=folder).stdout)
    expected = SLOW.replace("def f(x):\n    return x + 1\n", best["params"]["program"])
    assert best["value"] > 1 and expected != SLOW, "an edit improved on the starting program"
    written = tunesmith("best", "job.toml", "--write-to", "improved.py", cwd=folder)
    assert written.code == 0, written.stderr
    assert (folder / "improved.py").read_text() == expected
    in_place = tunesmith("best", "job.toml", "--write-to", "slow.py", cwd=folder)
    assert in_place.code == 0 and (folder / "slow.py").read_text() == expected
    shown = tunesmith("show", "job.toml", str(best["number"]), cwd=folder)
    assert shown.code == 0, shown.stderr
    constant = int(best["value"]) - 1  # score = f(0) = the constant; the parent had one less
    assert f"-    return x + {constant}\n" in shown.stdout and f"+    return x + {constant + 1}\n" in shown.stdout
    assert "Add one more." in shown.stdout


def test_a_live_run_with_the_local_model_applies_or_records_every_edit(tmp_path: Path) -> None:
    folder = tmp_path / "code-speedup"
    subprocess.run(["cp", "-r", str(REPO / "examples" / "code-speedup"), str(folder)], check=True)
    result = tunesmith("run", "job.toml", "--trials", "3", "--storage", "live.db", cwd=folder, timeout=600)
    assert result.code == 0, result.stdout + result.stderr
    with sqlite3.connect(folder / "live.db") as conn:
        trials = conn.execute("SELECT number, state, llm_call_id FROM trials ORDER BY number").fetchall()
        calls = conn.execute("SELECT id, error FROM llm_calls WHERE purpose = 'evolve'").fetchall()
    assert len(trials) == 3 and trials[0][1] == "complete"
    used = {call_id for _, _, call_id in trials}
    # Each model call gave a trial its program, or says why it gave none; only the last may be a proposal that was
    # being prepared in the background when the run ended.
    for call_id, error in calls[:-1]:
        assert call_id in used or (error and re.match(r"the edit (did not apply|gives a program already)", error)), (
            call_id,
            error,
            json.dumps(trials),
            result.stdout[-3000:],
        )

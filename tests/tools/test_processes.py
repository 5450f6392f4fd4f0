"""No process of a trial outlives it, and none of a dead run outlives the next start: real processes, no mocks.

Each test does what a fault report's probe did: a command that leaves a background job behind, a grandchild
that escapes into its own session, ``kill -9`` of the process running the trials, an objective that calls
``sys.exit``, secrets in our environment.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

import agent
from agent.registry import OptionsError
from agent.space import Float, Space
from agent.trial import Trial, TrialState
from tools import make_evaluator
from tools.command import CommandEvaluator
from tools.evaluation import Evaluation
from tools.function import FunctionEvaluator
from tools.processes import (
    FOLDER_PREFIX,
    TOKEN_ENV,
    Leftovers,
    clean_leftovers,
    kill_all,
    trial_workspace,
)

PY = sys.executable
#: What only Linux guarantees: orphans re-parented to us (a subreaper) and a child killed with its parent.
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl exists on Linux only")
REPO = Path(__file__).resolve().parents[2]
SLOW = "tests.tools.slow_objectives"

#: A command objective that starts a grandchild in a session of its own (out of its process group), writes
#: both pids into the folder given as its argument, and sleeps.
ESCAPING_OBJECTIVE = """
import os, subprocess, sys, time
from pathlib import Path

out = Path(sys.argv[1])

def publish(name, pid):
    (out / (name + ".tmp")).write_text(str(pid))
    (out / (name + ".tmp")).rename(out / name)

escapee = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
publish("escapee.pid", escapee.pid)
publish("objective.pid", os.getpid())
time.sleep(60)
"""

#: Runs one trial of a command (the rest of its argv) through the evaluator, as a run does.
RUN_EVALUATOR = """
import sys
from agent.testing.evaluators import running_trial
from tools.command import CommandEvaluator

CommandEvaluator([sys.executable, *sys.argv[1:]]).evaluate({}, running_trial(0))
"""

#: Runs a one-trial study of a command (the rest of its argv).
RUN_STUDY = """
import sys
import agent
from agent import Float, Space
from tools import CommandEvaluator

study = agent.create_study("leftovers", Space(x=Float(0, 1)), storage="memory:", proposer="random")
study.optimize(CommandEvaluator([sys.executable, *sys.argv[1:]]), n_trials=1)
"""


# Helpers -------------------------------------------------------------------------------------------------
def write(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(body))
    return path


def wait_for(condition: Callable[[], bool], within_s: float = 30.0) -> bool:
    """Poll ``condition`` until it holds or ``within_s`` passes; whether it held."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def running(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie, dead and waiting for its parent to reap it, does not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def our_zombies() -> list[int]:
    return [p.pid for p in psutil.Process().children() if p.status() == psutil.STATUS_ZOMBIE]


def read_pid(path: Path, within_s: float = 5.0) -> int:
    assert wait_for(path.exists, within_s), f"{path.name} was never written"
    return int(path.read_text())


@contextlib.contextmanager
def ends_killed(*pid_files: Path) -> Iterator[None]:
    """Kill the processes named in ``pid_files`` after the test, so a failing test leaves nothing running."""
    try:
        yield
    finally:
        for path in pid_files:
            if path.exists():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(path.read_text()), signal.SIGKILL)


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary directory of this test's own, here and for the processes it starts (TMPDIR), so that
    clean_leftovers sees only this test's trial folders."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    monkeypatch.setenv("TMPDIR", str(folder))
    return folder


def start(script: Path, *args: str | Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([PY, str(script), *map(str, args)], env=env, stderr=subprocess.PIPE)


# A trial's processes end with it ---------------------------------------------------------------------------
def test_a_background_job_of_a_successful_command_is_killed_when_the_trial_ends(tmp_path: Path, trial: Trial) -> None:
    pid_file = tmp_path / "job.pid"
    argv = ["sh", "-c", """sleep 300 & echo $! > "$1"; echo '{{"y": 1}}'""", "sh", str(pid_file)]
    with ends_killed(pid_file):
        evaluation = CommandEvaluator(argv, timeout=30).evaluate({}, trial)
        assert evaluation == Evaluation({"y": 1})
        job = read_pid(pid_file)
        assert wait_for(lambda: not running(job)), f"the background job {job} outlived its trial"
        assert job not in our_zombies(), "the killed job was not reaped"


@linux_only
def test_a_grandchild_in_its_own_session_is_killed_by_the_timeout(tmp_path: Path, trial: Trial) -> None:
    objective = write(tmp_path, "objective.py", ESCAPING_OBJECTIVE)
    with ends_killed(tmp_path / "escapee.pid", tmp_path / "objective.pid"):
        evaluation = CommandEvaluator([PY, str(objective), str(tmp_path)], timeout=2).evaluate({}, trial)
        assert evaluation.output is None
        assert evaluation.error == "timed out after 2s; the command and all its processes were killed"
        escapee = read_pid(tmp_path / "escapee.pid", within_s=0)
        assert wait_for(lambda: not running(escapee)), f"the grandchild {escapee} survived the timeout"
        assert escapee not in our_zombies()


def test_a_cancelled_run_kills_the_whole_trial(tmp_path: Path, trial: Trial) -> None:
    objective = write(tmp_path, "objective.py", ESCAPING_OBJECTIVE)
    results: list[Evaluation] = []
    evaluator = CommandEvaluator([PY, str(objective), str(tmp_path)], timeout=60)
    worker = threading.Thread(target=lambda: results.append(evaluator.evaluate({}, trial)), daemon=True)
    with ends_killed(tmp_path / "escapee.pid", tmp_path / "objective.pid"):
        worker.start()
        read_pid(tmp_path / "objective.pid")  # written last: the trial is fully started
        escapee = read_pid(tmp_path / "escapee.pid", within_s=0)
        assert kill_all() == 1
        worker.join(10)
        assert results and results[0].error is not None and "signal 9" in results[0].error
        assert wait_for(lambda: not running(escapee)), f"the grandchild {escapee} survived the cancel"


@linux_only
def test_what_a_function_objective_left_running_is_killed_when_it_returns(tmp_path: Path, trial: Trial) -> None:
    pid_file = tmp_path / "left.pid"
    with ends_killed(pid_file):
        evaluator = FunctionEvaluator(f"{SLOW}:leaves_a_background_process", timeout=30)
        assert evaluator.evaluate({"pid_file": str(pid_file)}, trial) == Evaluation(0.0)
        left = read_pid(pid_file, within_s=0)
        assert wait_for(lambda: not running(left)), f"{left} outlived the objective's trial"


# kill -9 of the run, and the next start ----------------------------------------------------------------------
def _kill_9_mid_trial(runner: Path, objective: Path, out: Path) -> tuple[int, int]:
    """Start ``runner`` on the escaping objective, SIGKILL it mid-trial; the objective's and escapee's pids."""
    run = start(runner, objective, out)
    try:
        pids = read_pid(out / "objective.pid", within_s=30), read_pid(out / "escapee.pid", within_s=0)
    finally:
        run.kill()
        run.communicate()
    return pids


@linux_only
def test_kill_9_of_the_run_kills_its_command_and_clean_leftovers_the_rest(tmp_path: Path, private_tmp: Path) -> None:
    runner = write(tmp_path, "run.py", RUN_EVALUATOR)
    objective = write(tmp_path, "objective.py", ESCAPING_OBJECTIVE)
    with ends_killed(tmp_path / "escapee.pid", tmp_path / "objective.pid"):
        command, escapee = _kill_9_mid_trial(runner, objective, tmp_path)
        assert wait_for(lambda: not running(command)), "the command outlived the process that ran it"
        assert running(escapee), "nothing should have killed the escaped grandchild yet"
        [folder] = private_tmp.glob(f"{FOLDER_PREFIX}*")

        assert clean_leftovers() == Leftovers(folders=1, processes=1)
        assert not folder.exists()
        assert wait_for(lambda: not running(escapee)), f"clean_leftovers left {escapee} running"
        assert not clean_leftovers(), "a second call finds nothing"


@linux_only
@pytest.mark.slow  # two Python processes that import the whole of tunesmith
def test_a_study_started_after_a_kill_9_cleans_up_after_it(tmp_path: Path, private_tmp: Path) -> None:
    runner = write(tmp_path, "study.py", RUN_STUDY)
    objective = write(tmp_path, "objective.py", ESCAPING_OBJECTIVE)
    quick = write(tmp_path, "quick.py", "print('{\"y\": 1}')")
    with ends_killed(tmp_path / "escapee.pid", tmp_path / "objective.pid"):
        command, escapee = _kill_9_mid_trial(runner, objective, tmp_path)
        assert wait_for(lambda: not running(command)), "the command outlived the study that ran it"
        assert running(escapee)

        resumed = start(runner, quick)
        _, stderr = resumed.communicate(timeout=60)
        assert resumed.returncode == 0, stderr.decode()
        assert wait_for(lambda: not running(escapee)), f"the next study left {escapee} running"
        assert list(private_tmp.glob(f"{FOLDER_PREFIX}*")) == []
        assert "killed 1 process(es)" in stderr.decode()


# Which folders are leftovers -----------------------------------------------------------------------------
def _folder(tmp: Path, name: str) -> Path:
    folder = tmp / f"{FOLDER_PREFIX}{name}"
    folder.mkdir()
    (folder / "stdout").write_text("a file in it")
    return folder


def _owned(number: int, pid: int, started: float, token: str) -> str:
    return f"{number}-{pid}-{round(started * 1000)}-{token}"


def test_clean_leftovers_tells_dead_owners_from_live_ones(private_tmp: Path) -> None:
    exited = subprocess.Popen([PY, "-c", "pass"])
    started = psutil.Process(exited.pid).create_time()
    exited.wait()
    me = psutil.Process()
    dead = _folder(private_tmp, _owned(0, exited.pid, started, "a" * 32))
    reused = _folder(private_tmp, _owned(1, me.pid, me.create_time() - 60, "b" * 32))
    live = _folder(private_tmp, _owned(2, me.pid, me.create_time(), "c" * 32))
    old_unowned = _folder(private_tmp, "3-oldstyle")
    two_hours_ago = time.time() - 7200
    os.utime(old_unowned, (two_hours_ago, two_hours_ago))
    new_unowned = _folder(private_tmp, "4-newstyle")

    assert clean_leftovers() == Leftovers(folders=3, processes=0)
    assert [f.exists() for f in (dead, reused, old_unowned)] == [False, False, False]
    assert live.exists() and new_unowned.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root's sandboxed programs run as another user")
def test_root_kills_a_dead_runs_sandboxed_strays_whatever_user_they_run_as(private_tmp: Path) -> None:
    exited = subprocess.Popen([PY, "-c", "pass"])
    started = psutil.Process(exited.pid).create_time()
    exited.wait()
    token = "d" * 32
    _folder(private_tmp, _owned(0, exited.pid, started, token))
    stray = subprocess.Popen(["sleep", "300"], user=65534, group=65534, env={TOKEN_ENV: token})
    try:
        assert running(stray.pid)
        assert clean_leftovers() == Leftovers(folders=1, processes=1)
        assert wait_for(lambda: not running(stray.pid)), "a stray of nobody carrying the dead run's token lived on"
    finally:
        stray.kill()
        stray.wait()


def test_a_running_trials_folder_is_named_after_its_owner_and_left_alone(private_tmp: Path) -> None:
    with trial_workspace(4) as workspace:
        assert (
            workspace.folder.name
            == f"{FOLDER_PREFIX}{_owned(4, os.getpid(), psutil.Process().create_time(), workspace.token)}"
        )
        assert workspace.folder.parent == private_tmp
        assert not clean_leftovers()
        assert workspace.folder.exists()
    assert not workspace.folder.exists()


# sys.exit in an objective ---------------------------------------------------------------------------------
def test_sys_exit_in_an_objective_fails_the_trial_and_the_study_goes_on() -> None:
    def objective(params: dict[str, float]) -> float:
        if params["x"] == 1.0:  # the first trial only: enqueued below
            sys.exit(3)
        return params["x"]

    study = agent.create_study("exits", Space(x=Float(0, 10)), storage="memory:", proposer="random", seed=0)
    study.enqueue({"x": 1.0})
    study.optimize(objective, n_trials=3)
    first, *rest = study.trials
    assert first.state is TrialState.FAILED
    assert first.error == "the objective called sys.exit(3); return a value or raise an exception instead"
    assert [t.state for t in rest] == [TrialState.COMPLETE, TrialState.COMPLETE]


def test_sys_exit_in_the_timeout_child_fails_the_trial(trial: Trial) -> None:
    evaluation = FunctionEvaluator(f"{SLOW}:exits", timeout=30).evaluate({"status": 3}, trial)
    assert evaluation.output is None
    assert evaluation.error == "the objective called sys.exit(3); return a value or raise an exception instead"


def test_sys_exit_without_a_status_and_keyboard_interrupt(trial: Trial) -> None:
    evaluation = FunctionEvaluator(lambda p: sys.exit()).evaluate({}, trial)
    assert evaluation.error == "the objective called sys.exit(); return a value or raise an exception instead"

    def interrupted(params: dict[str, float]) -> float:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        FunctionEvaluator(interrupted).evaluate({}, trial)


# Secrets -------------------------------------------------------------------------------------------------
ENV_DUMP = """
import json, os, sys
from pathlib import Path
Path(sys.argv[1]).write_text(json.dumps(dict(os.environ)))
print('{"y": 1}')
"""


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789")
    monkeypatch.setenv("HF_TOKEN", "hf_test_0123456789")


@pytest.mark.parametrize(("pass_env", "seen"), [([], set()), (["HF_TOKEN"], {"HF_TOKEN"})])
def test_a_command_gets_only_the_secrets_passed_to_it(
    tmp_path: Path, trial: Trial, secrets: None, pass_env: list[str], seen: set[str]
) -> None:
    dump = write(tmp_path, "dump.py", ENV_DUMP)
    out = tmp_path / "env.json"
    evaluator = CommandEvaluator([PY, str(dump), str(out)], env={"EXTRA": "1"}, pass_env=pass_env)
    assert evaluator.evaluate({}, trial) == Evaluation({"y": 1})
    env = json.loads(out.read_text())
    assert {"OPENAI_API_KEY", "HF_TOKEN"} & set(env) == seen
    assert env["EXTRA"] == "1" and env["PATH"] == os.environ["PATH"]
    assert len(env[TOKEN_ENV]) == 32


def test_the_timeout_child_gets_only_the_secrets_passed_to_it(trial: Trial, secrets: None) -> None:
    evaluator = FunctionEvaluator(f"{SLOW}:secrets_seen", timeout=30, pass_env=["HF_TOKEN"])
    assert evaluator.evaluate({}, trial) == Evaluation({"OPENAI_API_KEY": 0.0, "HF_TOKEN": 1.0})


def test_pass_env_names_are_checked() -> None:
    with pytest.raises(ValueError, match=r"^pass_env: 'HF-TOKEN' is not an environment variable name"):
        CommandEvaluator([PY], pass_env=["HF-TOKEN"])
    with pytest.raises(ValueError, match=r"^pass_env: expected a list of variable names"):
        FunctionEvaluator(abs, pass_env="HF_TOKEN")
    with pytest.raises(OptionsError, match=r"^objective\.pass_env: '1X' is not an environment variable name"):
        make_evaluator("command", {"command": [PY], "pass_env": ["1X"]})
    evaluator = make_evaluator("function", {"function": f"{SLOW}:fast", "pass_env": ["HF_TOKEN"]})
    assert isinstance(evaluator, FunctionEvaluator) and evaluator.pass_env == ["HF_TOKEN"]

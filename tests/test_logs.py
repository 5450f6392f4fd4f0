"""What the library says through logging (agent/logs.py), seen as a user sees it: on a real process's stderr."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.logs import ROOT, announce_if_slow, set_verbosity

REPO = Path(__file__).resolve().parents[1]

SCRIPT = """
import logging, sys
{setup}
from agent import Float, Space, create_study

study = create_study("s", Space(x=Float(0, 1)), storage="sqlite:///s.db", proposer="random", seed=0)
study.optimize(lambda p: p["x"] ** 2, n_trials=3)
print("done")
"""


def run_script(tmp_path: Path, setup: str = "") -> str:
    """Run a user's script that optimizes 3 trials; returns its stderr."""
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(setup=setup)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and done.stdout == "done\n", done.stderr
    return done.stderr


def trial_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if re.search(r"\btrial \d+ complete ", line)]


@pytest.mark.slow  # a new Python process
def test_a_script_that_never_configures_logging_sees_each_trial(tmp_path: Path) -> None:
    lines = trial_lines(run_script(tmp_path))
    assert len(lines) == 3
    assert all(line.startswith("[I ") and "tunesmith] trial " in line for line in lines)
    assert "] trial 0 complete  " in lines[0] and "(random, " in lines[0] and "x=" in lines[0]


@pytest.mark.slow  # a new Python process
def test_a_script_that_configures_logging_sees_each_trial_once(tmp_path: Path) -> None:
    stderr = run_script(tmp_path, 'logging.basicConfig(level=logging.INFO, format="%(name)s|%(message)s")')
    lines = trial_lines(stderr)
    assert len(lines) == 3 and all(line.startswith("agent.trials|trial ") for line in lines), stderr


@pytest.mark.slow  # a new Python process
def test_set_verbosity_warning_silences_the_trial_lines(tmp_path: Path) -> None:
    stderr = run_script(tmp_path, "import agent; agent.set_verbosity(logging.WARNING)")
    assert trial_lines(stderr) == [], stderr


def test_set_verbosity_takes_levels_and_names() -> None:
    logger = logging.getLogger(ROOT)
    before = logger.level
    try:
        set_verbosity("debug")
        assert logger.level == logging.DEBUG
        set_verbosity(logging.WARNING)
        assert logger.level == logging.WARNING
    finally:
        logger.setLevel(before)


def _said(caplog: pytest.LogCaptureFixture, start: str) -> None:
    """Wait until a message starting with ``start`` is logged: the announcing timer is a thread, which a loaded
    machine may run late (a fixed sleep in the block then ended before it spoke)."""
    deadline = time.monotonic() + 30
    while not any(message.startswith(start) for message in caplog.messages):
        assert time.monotonic() < deadline, f"{start!r} was never said"
        time.sleep(0.01)


def test_a_slow_wait_is_announced_once_and_its_end_said(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=ROOT), announce_if_slow("loading a model", after_s=0.05):
        _said(caplog, "still loading a model")
    assert len(caplog.messages) == 2
    assert re.fullmatch(r"still loading a model \(\d+ s\)\.\.\.", caplog.messages[0])
    assert re.fullmatch(r"loading a model: done in \d+\.\d s", caplog.messages[1])


def test_a_quick_wait_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("agent.tests")
    with caplog.at_level(logging.INFO, logger=ROOT):
        with announce_if_slow("fitting", after_s=1.0, logger=logger):
            pass
        time.sleep(1.2)  # past after_s: the timer was cancelled, not just late
        with announce_if_slow("starting", after_s=0.05, logger=logger, say_done=False):
            _said(caplog, "still starting")
    assert [r.name for r in caplog.records] == ["agent.tests"] and caplog.messages[0].startswith("still starting (")

"""Module-level objectives for FunctionEvaluator's timeout tests (a spawned child must import them)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def sleepy(params: dict[str, Any]) -> float:
    """Sleeps ``params["seconds"]`` (60 by default), then returns 0."""
    time.sleep(float(params.get("seconds", 60)))
    return 0.0


def fast(params: dict[str, Any]) -> dict[str, float]:
    """Returns at once, with the pid of the process it ran in."""
    return {"double": 2 * float(params["x"]), "pid": float(os.getpid())}


def with_trial(params: dict[str, Any], trial: Any) -> float:
    """Returns the trial's number, to show the trial reached the child."""
    return float(trial.number) + float(params["x"])


def sleepy_with_child(params: dict[str, Any]) -> float:
    """Starts a long-lived child, writes its pid to ``params["pid_file"]``, then sleeps."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    Path(str(params["pid_file"])).write_text(str(child.pid))
    time.sleep(60)
    return 0.0


def raises(params: dict[str, Any]) -> float:
    raise ValueError(f"bad lr {params.get('lr')}")


def dies(params: dict[str, Any]) -> float:
    """Ends its process without answering, as a segfault or an OOM kill would."""
    os._exit(3)


def exits(params: dict[str, Any]) -> float:
    """Ends the way a script does: sys.exit with a status."""
    sys.exit(int(params.get("status", 3)))


def secrets_seen(params: dict[str, Any]) -> dict[str, float]:
    """Which of the test's secret variables reached the objective (1.0) and which did not (0.0)."""
    return {name: float(name in os.environ) for name in ("OPENAI_API_KEY", "HF_TOKEN")}


def leaves_a_background_process(params: dict[str, Any]) -> float:
    """Starts a long-lived process in a session of its own, writes its pid, and returns at once."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    Path(str(params["pid_file"])).write_text(str(child.pid))
    return 0.0

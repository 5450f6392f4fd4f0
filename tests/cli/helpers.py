"""Running the ``tunesmith`` command for real: a new process, as a user's shell would start it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str


def tunesmith(*args: str, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 120) -> Result:
    """``tunesmith ARGS`` in ``cwd``, without a terminal (output captured), 200 columns wide, no colours."""
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "COLUMNS": "200",
        "NO_COLOR": "1",
        "TERM": "dumb",
        **(env or {}),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)

"""``tunesmith report`` run for real: the page and the PNGs of a study in a SQLite file, where they go by default,
the one-line error without matplotlib, and ``--help`` that never imports matplotlib."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.helpers import REPO, tunesmith
from tests.report.studies import numeric_study

pytest.importorskip("matplotlib")


def test_report_writes_the_page_here_and_the_pngs_where_asked(tmp_path: Path) -> None:
    numeric_study(8, storage=f"sqlite:///{tmp_path / 'bowl.db'}").close()
    result = tunesmith("report", "bowl", "--storage", "bowl.db", "--png", "plots/png", cwd=tmp_path)
    assert result.code == 0, result.stderr
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert page.count("<svg") == 4 and "<h1>bowl</h1>" in page
    pngs = sorted(p.name for p in (tmp_path / "plots" / "png").iterdir())
    assert pngs == ["best-so-far.png", "importance.png", "parallel-coordinates.png", "slices.png"]
    assert all((tmp_path / "plots" / "png" / name).stat().st_size > 5_000 for name in pngs)
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Wrote report.html (") and "4 plots) for study bowl" in lines[0]
    assert lines[0].endswith("nothing to plot yet: model cost over time")
    pngs_line = "Wrote 4 PNG files to plots/png: best-so-far.png, parallel-coordinates.png, slices.png, importance.png"
    assert lines[1] == pngs_line


def test_without_matplotlib_report_says_what_to_install_and_reads_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "matplotlib.py").write_text('raise ImportError("matplotlib is blocked in this test")\n')
    pythonpath = os.pathsep.join([str(blocker), str(REPO)])
    result = tunesmith("report", "bowl", "--storage", "none.db", cwd=tmp_path, env={"PYTHONPATH": pythonpath})
    assert result.code == 1
    assert result.stderr.strip().splitlines() == [
        "error: the report needs matplotlib (matplotlib is blocked in this test); install it with: "
        'pip install "tunesmith[report]"'
    ]
    assert not (tmp_path / "none.db").exists() and not (tmp_path / "report.html").exists()


def test_the_command_line_does_not_import_matplotlib_until_a_report_is_made() -> None:
    code = (
        "import argparse, sys\n"
        "from agent.cli import report\n"
        "commands = argparse.ArgumentParser().add_subparsers()\n"
        "report.register(commands)\n"
        "assert 'matplotlib' not in sys.modules, 'imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)

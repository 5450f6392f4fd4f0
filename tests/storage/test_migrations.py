"""Schema upgrades: a database written by tunesmith 0.1 (tests/storage/data/schema1.db, made by 0.1 itself)."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from agent import load_study
from agent.storage import SQLStorage, StorageError
from agent.storage.migrate import HEAD
from agent.trial import TrialState

LEGACY = Path(__file__).parent / "data" / "schema1.db"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def legacy(tmp_path: Path) -> Path:
    path = tmp_path / "old.db"
    shutil.copy(LEGACY, path)
    return path


def revision(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return str(conn.execute("SELECT version_num FROM alembic_version").fetchone()[0])


def dump(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return list(conn.iterdump())


def test_an_old_file_is_backed_up_then_upgraded_on_open(legacy: Path) -> None:
    original = dump(legacy)
    storage = SQLStorage(f"sqlite:///{legacy}")
    backup = legacy.with_name("old.db.schema-0001.bak")
    assert dump(backup) == original and revision(legacy) == HEAD
    trials = storage.trials(storage.get_study("legacy").id)  # type: ignore[union-attr]
    assert [t.number for t in trials] == list(range(7))
    assert [t.state for t in trials[:5]] == [TrialState.COMPLETE] * 5 and trials[0].value == 0.5
    assert (trials[5].state, trials[5].interrupted, trials[5].error) == (TrialState.FAILED, True, "interrupted")
    assert trials[6].state is TrialState.RUNNING and not trials[6].interrupted


def test_an_upgraded_study_goes_on_where_it_stopped(legacy: Path) -> None:
    study = load_study("legacy", f"sqlite:///{legacy}")
    assert study.recover_interrupted() == [6]  # 0.1's process is long gone
    summary = study.optimize(lambda p: p["x"] * p["n"], n_trials=3)
    assert summary.trials_run == 3
    assert [t.number for t in study.trials] == list(range(10))
    assert study.best_value >= 3.658  # trial 4 of the old run
    study.note("steering works on an upgraded file")  # schema 4's study_events table exists
    assert study.notes == ("steering works on an upgraded file",)


@pytest.mark.slow
def test_upgrade_by_hand_with_the_cli(legacy: Path) -> None:
    url = f"sqlite:///{legacy}"
    with pytest.raises(StorageError, match=f"tunesmith storage upgrade {url}"):
        SQLStorage(url, upgrade=False)
    result = subprocess.run(
        [sys.executable, "-m", "agent.cli", "storage", "upgrade", url], capture_output=True, text=True, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    assert f"is at schema {HEAD}" in result.stdout and revision(legacy) == HEAD
    assert legacy.with_name("old.db.schema-0001.bak").exists()


def test_a_database_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    SQLStorage(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(StorageError, match="newer tunesmith"):
        SQLStorage(f"sqlite:///{path}")


def test_0_1_refuses_an_upgraded_file(legacy: Path) -> None:
    SQLStorage(f"sqlite:///{legacy}").close()
    with sqlite3.connect(legacy) as conn:  # what tunesmith 0.1 checks before writing
        assert conn.execute("SELECT value FROM tunesmith_meta WHERE key = 'schema_version'").fetchone()[0] == "2"

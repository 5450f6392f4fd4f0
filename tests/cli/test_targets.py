"""How a TARGET argument is read: a job file, a storage (URL or database path), or a study name."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from agent.cli.targets import Target, resolve, storage_url


def test_a_plain_path_is_an_absolute_sqlite_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert storage_url("gb/tunesmith.db") == f"sqlite:///{tmp_path / 'gb' / 'tunesmith.db'}"
    assert storage_url("postgresql://db-host/tunesmith") == "postgresql://db-host/tunesmith"
    assert storage_url("sqlite:///x.db") == "sqlite:///x.db"


def test_a_job_file_means_its_study_in_its_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gb").mkdir()
    (tmp_path / "gb" / "job.toml").write_text('[study]\nname = "forest"\n')
    (tmp_path / "gb" / "stored.toml").write_text('[study]\nname = "s"\nstorage = "sqlite:///runs/s.db"\n')
    gb = tmp_path / "gb"
    assert resolve("gb/job.toml", None) == Target(f"sqlite:///{gb / 'tunesmith.db'}", "forest", gb)
    assert resolve("gb/stored.toml", None) == Target(f"sqlite:///{gb / 'runs' / 's.db'}", "s", gb)
    assert resolve("gb/job.toml", "other.db") == Target(f"sqlite:///{tmp_path / 'other.db'}", "forest", gb)


def test_a_database_file_or_url_means_every_study_in_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    sqlite3.connect(tmp_path / "results").close()  # a SQLite file without a suffix, recognised by its header
    (tmp_path / "results").write_bytes(b"SQLite format 3\x00" + bytes(100))
    assert resolve("results", None) == Target(f"sqlite:///{tmp_path / 'results'}", None)
    assert resolve("missing.db", None) == Target(f"sqlite:///{tmp_path / 'missing.db'}", None)
    assert resolve("postgresql://h/db", None) == Target("postgresql://h/db", None)


def test_anything_else_is_a_study_name_in_the_storage_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve("forest", None) == Target("sqlite:///tunesmith.db", "forest")
    assert resolve("forest", "gb/t.db") == Target(f"sqlite:///{tmp_path / 'gb' / 't.db'}", "forest")
    assert resolve(None, None) == Target("sqlite:///tunesmith.db", None)


def test_a_storage_given_twice_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        resolve("postgresql://h/db", "other.db")
    assert exited.value.code == 2
    assert "leave out --storage" in capsys.readouterr().err


def test_a_job_file_without_a_study_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "job.toml").write_text("[study]\n")
    with pytest.raises(SystemExit):
        resolve(str(tmp_path / "job.toml"), None)
    assert "study.name is missing" in capsys.readouterr().err

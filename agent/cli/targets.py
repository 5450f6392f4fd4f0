"""What ``status``, ``best``, ``trials`` and ``show`` are pointed at: a job file, a storage, or a study name.

``tunesmith run`` keeps a study where its job file says (by default ``tunesmith.db`` beside the file), so
asking about it from anywhere else must not mean spelling out that path: these commands take the job file
itself, a storage URL or database path, or a study name looked up in ``--storage`` (default
``./tunesmith.db``). Plain paths are SQLite files.
"""

from __future__ import annotations

import argparse
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent.cli.common import exit_code, fail
from agent.files import is_sqlite

if TYPE_CHECKING:
    from agent.storage import Storage
    from agent.study import Study

#: A target with one of these suffixes is a database file even before it exists (then: "no database at ...").
DATABASE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


@dataclass(frozen=True)
class Target:
    """A storage URL, the study named there (None: the whole storage), and the folder of the job file that
    named them (where a Code parameter's file is), when a job file did."""

    storage: str
    name: str | None
    folder: Path | None = None


def add_target_arguments(parser: argparse.ArgumentParser, *, optional: str | None = None) -> None:
    """``TARGET`` and ``--storage``, as every command that looks at a study takes them; ``optional`` is what a
    left-out TARGET means (then it may be left out)."""
    what = "a job file, a storage (URL or database path), or a study name"
    if optional is None:
        parser.add_argument("target", metavar="TARGET", help=what)
    else:
        parser.add_argument("target", nargs="?", metavar="TARGET", help=f"{what} ({optional} when left out)")
    parser.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        help="database URL or path, for a study name (default: sqlite:///tunesmith.db here)",
    )


def storage_url(text: str) -> str:
    """A URL as given (``sqlite:///x.db``, ``postgresql://...``); a plain path as an absolute SQLite URL."""
    if "://" in text or text == "memory:":
        return text
    return "sqlite:///" + str(Path(text).expanduser().resolve())


def resolve(target: str | None, storage: str | None) -> Target:
    """Read ``TARGET`` and ``--storage`` the way a user means them.

    - ``job.toml`` (or any existing text file): the study that job file runs, in its storage;
    - a URL or a SQLite file (``*.db``): every study stored there;
    - anything else: a study name, in ``--storage``.
    """
    from agent.storage import DEFAULT_STORAGE

    chosen = storage_url(storage) if storage else None
    if target is None:
        return Target(chosen or DEFAULT_STORAGE, None)
    path = Path(target).expanduser()
    if "://" in target or is_sqlite(path) or path.suffix in DATABASE_SUFFIXES:
        if chosen:
            fail(f"{target} is a storage; leave out --storage or give a study name instead")
        return Target(storage_url(target), None)
    if target.endswith(".toml") or path.is_file():
        name, job_storage = job_location(path)
        return Target(chosen or job_storage, name, path.resolve().parent)
    return Target(chosen or DEFAULT_STORAGE, target)


def job_location(path: Path) -> tuple[str, str]:
    """The study name and storage URL a job file names, read without checking the rest of the file: asking
    about a study must work even where the job could not run (a model key that is not set in this shell)."""
    from agent.files import FileRefused, read_bounded
    from agent.jobfile import JOB_FILE_LIMIT, resolve_storage
    from agent.storage import DEFAULT_STORAGE

    try:
        study = tomllib.loads(read_bounded(path, JOB_FILE_LIMIT).decode()).get("study", {})
    except FileNotFoundError:
        fail(f"no job file {path} (give a job file, a storage URL or path, or a study name)")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, FileRefused) as exc:
        fail(f"cannot read the job file {path}: {exc}")
    name = study.get("name") if isinstance(study, dict) else None
    if not isinstance(name, str):
        fail(f'{path}: study.name is missing; a job file names its study in [study] name = "..."')
    storage = study.get("storage", DEFAULT_STORAGE)
    if not isinstance(storage, str):
        fail(f"{path}: study.storage must be a URL such as sqlite:///tunesmith.db")
    return name, resolve_storage(storage, path.resolve().parent)


def open_storage_of(target: Target) -> Storage:
    """The storage of ``target``, never created: asking about a study must not leave an empty database."""
    from agent.storage import StorageError, open_storage

    try:
        return open_storage(target.storage, create=False)
    except StorageError as exc:
        fail(str(exc), exit_code(exc))


def open_study(target: Target) -> Study:
    """The one study ``target`` means; a storage holding exactly one study means that one."""
    from agent.storage import StorageError
    from agent.study import Study, load_study

    if target.name is not None:
        try:
            return load_study(target.name, target.storage)
        except StorageError as exc:
            fail(str(exc), exit_code(exc))
    storage = open_storage_of(target)
    records = storage.list_studies()
    if len(records) == 1:
        return Study(storage, records[0])
    if not records:
        fail(f"{target.storage} holds no study yet; run a job first (tunesmith run JOB.toml)")
    names = ", ".join(r.name for r in records)
    fail(f"{target.storage} holds several studies ({names}); name one, e.g. NAME --storage {target.storage}")

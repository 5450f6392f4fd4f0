"""What an MCP client may name: the job files it may run, and where it may read and write.

A chat assistant reads text it did not write (a web page, a file, a tool's output), so whatever it sends may
have been written by someone else. The server therefore takes nothing a client names on trust:

- a job file is loaded (its objective module imported, its command later run on this host, as this user) only
  when the person who started the server allowed it: named on ``tunesmith mcp``'s command line, or inside a
  folder given there with ``--allow-jobs``;
- a path (a report's) or a SQLite storage must lie inside the server's root (``--root``, by default the folder
  it was started in), after symlinks and ``..`` are resolved; another database URL only when it is the
  server's own ``--storage``;
- an existing file is overwritten only when this program wrote it: a report recognised by its generator tag,
  a database by SQLite's header.

Each refusal is one line naming the argument and how to allow what was asked.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from agent.interact.session import SessionError

#: The longest path or URL a client may send (Linux's PATH_MAX): a longer one is refused before any file call.
MAX_PATH = 4096
#: What a report's name ends with: a client must not create a script or a module where a job looks for one.
REPORT_SUFFIXES = (".html", ".htm")
#: The bytes of a report's start read to find its generator tag.
_REPORT_HEAD = 4096


class BoundaryError(SessionError):
    """A job, path or storage a client named that the server may not use; the message says how to allow it."""


@dataclass(frozen=True)
class Boundary:
    """The jobs a client may run and the folder it may write in, as the server's command line set them.

    Attributes:
        root: the folder (resolved) every client path is taken from and must stay in.
        storage: the server's own storage URL, which a client may always name.
        jobs: the job files (resolved) a client may load.
        job_folders: folders (resolved) whose job files, at any depth, a client may load.
    """

    root: Path
    storage: str
    jobs: frozenset[Path] = frozenset()
    job_folders: tuple[Path, ...] = ()

    @classmethod
    def of(
        cls, root: str | Path, storage: str, jobs: Iterable[str | Path] = (), job_folders: Iterable[str | Path] = ()
    ) -> Boundary:
        """The boundary of a server started in ``root`` with these jobs and ``--allow-jobs`` folders (each taken
        from the current folder, as a shell user means them)."""
        return cls(
            Path(root).resolve(),
            storage,
            frozenset(Path(job).resolve() for job in jobs),
            tuple(Path(folder).resolve() for folder in job_folders),
        )

    def job(self, given: str) -> Path:
        """The job file ``given`` names, when the server may run it."""
        path = self._resolved(given, "job")
        if path in self.jobs or any(path.is_relative_to(folder) for folder in self.job_folders):
            return path
        raise BoundaryError(
            f"job: {given} is not a job this server may run (run_trials runs a job's command on this host); "
            f"to allow it, start the server with it (tunesmith mcp {path}) or with its folder (--allow-jobs "
            f"{path.parent})"
        )

    def report(self, given: str) -> Path:
        """Where a report named ``given`` may be written: an HTML file inside the root, new or a report already."""
        from agent.report.html import GENERATOR

        path = self._contain(self._resolved(given, "path"), given, "path")
        if path.suffix.lower() not in REPORT_SUFFIXES:
            raise BoundaryError(f"path: {given} is not an .html file; give a report's name such as report.html")
        if path.exists() and GENERATOR.encode() not in self._head(path, given, "path"):
            raise BoundaryError(
                f"path: {given} exists and is not a tunesmith report, so it is not overwritten; give a new file's "
                "name, or remove that file first"
            )
        return path

    def storage_url(self, given: str | None) -> str:
        """The storage URL ``given`` (a URL or a SQLite path) means, when a client may open it; None: the server's."""
        from agent.cli.targets import DATABASE_SUFFIXES
        from agent.files import is_sqlite

        if given is None:
            return self.storage
        _check_usable(given, "storage")
        database = _database(given) if "://" in given else given
        if database is None:  # another kind of database: the server's own only
            if given == self.storage:
                return given
            raise BoundaryError(
                f"storage: {_shown(given)} is not this server's storage; a client may open SQLite files inside "
                f"{self.root} or the server's own --storage (to serve another database, start tunesmith mcp with "
                "--storage URL)"
            )
        if not database:
            raise BoundaryError(f"storage: {_shown(given)} names no database file; give a path such as tunesmith.db")
        path = self._resolved(database, "storage")
        url = "sqlite:///" + str(path)
        if url == self.storage:
            return url
        self._contain(path, given, "storage")
        if path.suffix not in DATABASE_SUFFIXES:
            raise BoundaryError(
                f"storage: {given} does not end in {', '.join(DATABASE_SUFFIXES)}; give a database file's name"
            )
        if path.exists() and not is_sqlite(path):
            self._head(path, given, "storage")  # a special file is refused as such
            raise BoundaryError(f"storage: {given} exists and is not a SQLite database; give a new file's name")
        return url

    def _contain(self, path: Path, given: str, argument: str) -> Path:
        """``path`` (resolved), when it is inside the root."""
        if not path.is_relative_to(self.root):
            raise BoundaryError(
                f"{argument}: {given} is outside the server's folder {self.root}; give a path inside it, or start "
                "tunesmith mcp with --root DIR"
            )
        return path

    def _resolved(self, given: str, argument: str) -> Path:
        """``given`` taken from the root, symlinks and ``..`` resolved; a path no file call can take is refused."""
        _check_usable(given, argument)
        try:
            return (self.root / given).resolve()
        except (OSError, RuntimeError) as exc:  # a name too long, a symlink loop
            raise BoundaryError(f"{argument}: {given} cannot be resolved ({exc})") from None

    @staticmethod
    def _head(path: Path, given: str, argument: str) -> bytes:
        from agent.files import FileRefused, read_head

        try:
            return read_head(path, _REPORT_HEAD)
        except (OSError, FileRefused) as exc:
            raise BoundaryError(f"{argument}: {given} cannot be used: {exc}") from None


def _check_usable(given: str, argument: str) -> None:
    """Refuse what no file call can take, before one is tried on it."""
    if len(given) > MAX_PATH or any(ord(c) < 32 for c in given):
        raise BoundaryError(f"{argument}: not a usable path (a control character, or over {MAX_PATH} characters)")


def _database(url: str) -> str | None:
    """The file of a SQLite URL ("" for one without a file), None for another kind of database or a URL with
    options (``?uri=true`` would let SQLite open what the path does not say)."""
    import sqlalchemy as sa

    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.query:
        return None
    return parsed.database or ""


def _shown(url: str) -> str:
    from agent.secrets import without_credentials

    return without_credentials(url)

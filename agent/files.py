"""Reading a file someone named: only a regular file, only up to a size, said in one line otherwise.

Why: ``path.read_text()`` on ``/dev/zero`` grows the process until the kernel kills it, on a FIFO it waits
forever, and on a 10 GB file it reads 10 GB. A job file, a dev set, or any file an MCP client names may be
any of those, so each is opened without blocking (``O_NONBLOCK``: a FIFO with no writer), checked with
``fstat`` on the descriptor opened (not the path, which could be swapped in between), and read to at most
its limit plus one byte (a file under ``/proc`` says it is empty, and a file may grow while it is read).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from agent.errors import TunesmithError

MIB = 1024 * 1024
#: How every SQLite database file starts.
SQLITE_HEADER = b"SQLite format 3\x00"


class FileRefused(TunesmithError, ValueError):
    """A file that is not read: not a regular file, or larger than its limit. The message says which, in a line."""


def read_bounded(path: str | Path, limit: int) -> bytes:
    """The bytes of the regular file at ``path``, at most ``limit`` of them.

    Raises:
        FileRefused: it is not a regular file (a device, a FIFO, a folder), or it holds more than ``limit`` bytes.
        OSError: it cannot be opened (FileNotFoundError when it does not exist).
    """
    fd = _open_regular(Path(path), limit)
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise FileRefused(f"it holds more than {_size(limit)}, the most read here")
    return data


def read_head(path: str | Path, count: int) -> bytes:
    """The first ``count`` bytes of the regular file at ``path`` (what recognises a kind of file by its start).

    Raises:
        FileRefused: it is not a regular file.
        OSError: it cannot be opened.
    """
    fd = _open_regular(Path(path), None)
    with os.fdopen(fd, "rb") as f:
        return f.read(count)


def is_sqlite(path: str | Path) -> bool:
    """Whether ``path`` is a SQLite database: a regular file that starts as one (a FIFO is not waited on),
    whatever its name."""
    try:
        return read_head(path, len(SQLITE_HEADER)) == SQLITE_HEADER
    except (OSError, FileRefused):
        return False


def _open_regular(path: Path, limit: int | None) -> int:
    """A descriptor open for reading on ``path``, checked to be a regular file of at most ``limit`` bytes."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileRefused(f"it is {_kind(info.st_mode)}, not a regular file")
        if limit is not None and info.st_size > limit:
            raise FileRefused(f"it is {_size(info.st_size)}, more than the {_size(limit)} read here")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _kind(mode: int) -> str:
    kinds = {
        stat.S_ISDIR: "a folder",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
        stat.S_ISFIFO: "a FIFO",
        stat.S_ISSOCK: "a socket",
    }
    return next((name for test, name in kinds.items() if test(mode)), "a special file")


def _size(count: int) -> str:
    return f"{count / MIB:.1f} MiB" if count >= MIB else f"{count} bytes"

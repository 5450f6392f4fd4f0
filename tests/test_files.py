"""read_bounded and read_head: what a file that says it is small, or is no file at all, does to a reader."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.files import FileRefused, read_bounded, read_head


def test_a_file_that_says_it_is_empty_is_still_cut_at_the_limit() -> None:
    # Files under /proc have st_size 0 whatever they hold: only what is read tells.
    assert os.stat("/proc/self/status").st_size == 0
    with pytest.raises(FileRefused, match=r"^it holds more than 10 bytes, the most read here$"):
        read_bounded("/proc/self/status", 10)
    assert read_bounded("/proc/self/status", 1 << 20).startswith(b"Name:")


def test_a_regular_file_is_read_whole_up_to_its_limit_and_its_head_alone(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    assert read_bounded(path, 100) == b"x" * 100
    with pytest.raises(FileRefused, match=r"^it is 100 bytes, more than the 99 bytes read here$"):
        read_bounded(path, 99)
    assert read_head(path, 3) == b"xxx"


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(FileRefused, match="it is a FIFO, not a regular file"):
        read_head(tmp_path / "fifo", 16)
    with pytest.raises(FileNotFoundError):
        read_bounded(tmp_path / "missing", 16)

"""The evaluator's side of a candidate (tools.candidate): a real sandbox, saved and loaded as a trusted evaluator
in another process would, and the candidate's failures as one-line errors."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.candidate import CANDIDATE_ENV, Candidate, CandidateError
from tools.sandbox import Limits, Sandbox


@pytest.fixture
def candidate() -> Iterator[tuple[Sandbox, Candidate]]:
    tree = Path(tempfile.mkdtemp(prefix="candidate-tree-"))
    tree.chmod(0o755)
    try:
        with Sandbox(tree, Limits()) as box:
            spec = box.confinement.save()
            yield box, Candidate.from_env({CANDIDATE_ENV: str(spec)})
    finally:
        shutil.rmtree(tree)


def test_outside_a_trial_the_evaluator_is_told_how_to_run() -> None:
    with pytest.raises(CandidateError, match=r"TUNESMITH_CANDIDATE is not set.*tunesmith run job\.toml"):
        Candidate.from_env({})


def test_calls_return_values_timed_here_and_errors_name_the_candidates_exception(
    candidate: tuple[Sandbox, Candidate],
) -> None:
    box, cand = candidate
    box.write(
        "mod.py", "print('noise on stdout')\ndef add(a, b):\n    return a + b\ndef boom():\n    raise KeyError('x')\n"
    )
    assert cand.folder == box.path
    with cand.functions("mod", timeout_s=30) as mod:
        call = mod.call("add", 2, b=3)
        assert call.value == 5 and call.seconds > 0  # its print went to stderr, not into the replies
        with pytest.raises(CandidateError, match=r"^boom\(\) raised KeyError: 'x'"):
            mod.call("boom")
        assert mod.call("add", [1], [2]).value == [1, 2], "the process goes on after an error"
    assert box.confinement.started()[0] == 1


def test_a_module_that_does_not_import_hangs_or_floods_fails_with_a_line(candidate: tuple[Sandbox, Candidate]) -> None:
    box, cand = candidate
    box.write("broken.py", "def f(:\n")
    with pytest.raises(CandidateError, match=r"^importing broken raised SyntaxError"), cand.functions("broken"):
        pass
    box.write("slow.py", "import time\ndef f():\n    time.sleep(60)\n")
    with cand.functions("slow") as slow, pytest.raises(CandidateError, match=r"^f\(\) gave no answer within 0\.5 s"):
        slow.call("f", timeout_s=0.5)
    box.write("dies.py", "import os\ndef f():\n    os._exit(3)\n")
    with cand.functions("dies") as dies, pytest.raises(CandidateError, match=r"process ended \(status"):
        dies.call("f")
    box.write("flood.py", "import os\ndef f():\n    os.write(3, b'x' * (65 << 20))  # fd 3: the harness's reply pipe\n")
    with cand.functions("flood", timeout_s=60) as flood, pytest.raises(CandidateError, match=r"answer is over 64 MiB"):
        flood.call("f")


def test_run_feeds_input_and_keeps_the_output(candidate: tuple[Sandbox, Candidate]) -> None:
    _, cand = candidate
    done = cand.run([sys.executable, "-c", "import sys; print(sys.stdin.read().upper())"], input=b"rows", timeout_s=30)
    assert (done.returncode, done.stdout) == (0, "ROWS\n"), done.stderr

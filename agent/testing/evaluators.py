"""The evaluator contract: what the loop relies on, whichever way an objective is run.

Every rule is checked against one objective, :func:`contract_objective`, whose behaviour the parameters
choose (``{"behaviour": "metrics", "x": 0.25}``), so an evaluator kind only has to say how it runs *that*
objective. Subclass :class:`EvaluatorContract` and implement :meth:`EvaluatorContract.make_evaluator`::

    from agent.testing.evaluators import EvaluatorContract

    class TestNotebookEvaluator(EvaluatorContract):
        def make_evaluator(self, tmp_path, timeout=None):
            # a notebook cell calling agent.testing.evaluators.contract_objective(params)
            return NotebookEvaluator(write_notebook(tmp_path), timeout=timeout)

The rules: an evaluation is always returned, never raised, whatever the objective does; a failure carries a
one-line error and keeps what the objective said as feedback; the output is what :func:`tools.read_outcome`
reads (a number, or metrics); parameters arrive unchanged, text included; evaluations may run at once from
several threads; a timeout ends the objective and whatever it started. Set ``supports_timeout = False`` for
an evaluator without timeouts.
"""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent.space import ParamValue
from agent.trial import Trial, TrialState
from tools.evaluation import Evaluation, Evaluator, ObjectiveOutputError, read_outcome

__all__ = ["TEXT", "EvaluatorContract", "contract_objective", "running_trial"]

#: A text value that must reach the objective exactly: quotes, a newline, shell syntax, non-ASCII.
TEXT = 'say "hi"\nthen; rm -rf ~ && echo $HOME {x} — ünïcode'


def contract_objective(params: Mapping[str, Any]) -> Any:
    """The objective every evaluator kind runs for the contract; ``params["behaviour"]`` says what it does.

    ``value``: returns ``2 * x``. ``metrics``: ``{"loss": x, "accuracy": 1 - x}``. ``raise``: raises
    ``RuntimeError("boom x")``. ``none``: returns None (no result). ``nan``: returns NaN. ``text``: returns the
    length of ``params["text"]``, or -1 when it is not :data:`TEXT`. ``sleep``: sleeps ``x`` seconds, returns 1.
    ``spawn``: starts a child that sleeps a minute, writes its pid to ``params["pid_file"]``, sleeps too.
    """
    behaviour = params["behaviour"]
    x = float(params.get("x", 0.0))
    if behaviour == "value":
        return 2 * x
    if behaviour == "metrics":
        return {"loss": x, "accuracy": 1 - x}
    if behaviour == "raise":
        print(f"about to fail on {x}", file=sys.stderr)
        raise RuntimeError(f"boom {x}")
    if behaviour == "none":
        return None
    if behaviour == "nan":
        return math.nan
    if behaviour == "text":
        return float(len(params["text"])) if params["text"] == TEXT else -1.0
    if behaviour == "sleep":
        time.sleep(x)
        return 1.0
    if behaviour == "spawn":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        Path(str(params["pid_file"])).write_text(str(child.pid))
        time.sleep(60)
        return 1.0
    raise ValueError(f"unknown behaviour {behaviour!r}")


def running_trial(number: int = 0, params: Mapping[str, ParamValue] | None = None) -> Trial:
    """A running trial, as the study hands it to an evaluator."""
    return Trial(
        number=number,
        params=dict(params or {}),
        state=TrialState.RUNNING,
        proposer="test",
        started_at=datetime.now(UTC),
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of this process counts as gone once reaped
        return os.waitpid(pid, os.WNOHANG)[0] != pid
    except ChildProcessError:
        return True


def _gone(pid: int, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class EvaluatorContract:
    """The rules every evaluator keeps. Subclasses implement :meth:`make_evaluator`."""

    #: False for an evaluator that has no timeout (its timeout rules are skipped).
    supports_timeout = True

    def make_evaluator(self, tmp_path: Path, timeout: float | None = None) -> Evaluator:
        """An evaluator running :func:`contract_objective` with the parameters it is given."""
        raise NotImplementedError

    def evaluate(self, evaluator: Evaluator, **params: ParamValue) -> Evaluation:
        evaluation = evaluator.evaluate(params, running_trial(3, params))
        assert isinstance(evaluation, Evaluation)
        return evaluation

    def assert_failed(self, evaluation: Evaluation) -> None:
        assert evaluation.output is None
        assert isinstance(evaluation.error, str) and evaluation.error.strip()
        assert "\n" not in evaluation.error.strip(), "the error is one line; details go to feedback"

    # Results --------------------------------------------------------------------------------------------
    def test_a_number_is_read_by_read_outcome(self, tmp_path: Path) -> None:
        evaluation = self.evaluate(self.make_evaluator(tmp_path), behaviour="value", x=0.25)
        assert evaluation.error is None
        assert read_outcome(evaluation.output, "value")[0] == 0.5

    def test_metrics_are_read_by_read_outcome(self, tmp_path: Path) -> None:
        evaluation = self.evaluate(self.make_evaluator(tmp_path), behaviour="metrics", x=0.25)
        assert evaluation.error is None
        assert read_outcome(evaluation.output, "loss") == (0.25, {"loss": 0.25, "accuracy": 0.75})

    def test_parameters_arrive_unchanged(self, tmp_path: Path) -> None:
        evaluation = self.evaluate(self.make_evaluator(tmp_path), behaviour="text", text=TEXT)
        assert evaluation.error is None, evaluation
        assert read_outcome(evaluation.output, "value")[0] == len(TEXT)

    # Failures are returned, never raised ------------------------------------------------------------------
    def test_an_objective_that_fails_is_a_failed_evaluation(self, tmp_path: Path) -> None:
        evaluation = self.evaluate(self.make_evaluator(tmp_path), behaviour="raise", x=7)
        self.assert_failed(evaluation)
        said = f"{evaluation.error}\n{evaluation.feedback or ''}"
        assert "boom 7" in said, "what the objective said reaches the error or the feedback"

    def test_no_result_is_refused_by_read_outcome_or_failed(self, tmp_path: Path) -> None:
        evaluation = self.evaluate(self.make_evaluator(tmp_path), behaviour="none")
        if evaluation.error is None:
            with pytest.raises(ObjectiveOutputError):
                read_outcome(evaluation.output, "value")
        else:
            self.assert_failed(evaluation)

    def test_nan_never_becomes_a_value(self, tmp_path: Path) -> None:
        evaluation = self.evaluate(self.make_evaluator(tmp_path), behaviour="nan")
        if evaluation.error is None:
            with pytest.raises(ObjectiveOutputError):
                read_outcome(evaluation.output, "value")
        else:
            self.assert_failed(evaluation)

    # Concurrency and timeouts -----------------------------------------------------------------------------
    def test_concurrent_evaluations_each_get_their_own_result(self, tmp_path: Path) -> None:
        evaluator = self.make_evaluator(tmp_path)
        results: dict[int, Evaluation] = {}

        def run(i: int) -> None:
            results[i] = self.evaluate(evaluator, behaviour="value", x=float(i))

        threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert sorted(results) == [0, 1, 2, 3]
        assert {i: read_outcome(e.output, "value")[0] for i, e in results.items()} == {i: 2.0 * i for i in range(4)}

    def test_a_fast_objective_finishes_under_its_timeout(self, tmp_path: Path) -> None:
        if not self.supports_timeout:
            pytest.skip("this evaluator has no timeout")
        evaluation = self.evaluate(self.make_evaluator(tmp_path, timeout=60), behaviour="value", x=1.5)
        assert evaluation.error is None
        assert read_outcome(evaluation.output, "value")[0] == 3.0

    @pytest.mark.slow
    def test_a_timeout_ends_the_objective_and_what_it_started(self, tmp_path: Path) -> None:
        if not self.supports_timeout:
            pytest.skip("this evaluator has no timeout")
        pid_file = tmp_path / "child.pid"
        evaluator = self.make_evaluator(tmp_path, timeout=5)
        started = time.monotonic()
        evaluation = self.evaluate(evaluator, behaviour="spawn", pid_file=str(pid_file))
        assert time.monotonic() - started < 20
        self.assert_failed(evaluation)
        assert evaluation.error is not None and "timed out" in evaluation.error
        if pid_file.exists():  # the objective got as far as starting its child
            child = int(pid_file.read_text())
            gone = _gone(child)
            if not gone:  # it survived: end it here, so a failed rule leaves nothing running
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, 9)
            assert gone, f"the objective's child {child} survived the timeout"

"""Every built-in evaluator passes the evaluator contract (agent.testing.evaluators), as a new one would."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from agent.testing.evaluators import EvaluatorContract, contract_objective
from tools import CommandEvaluator, Evaluator, FunctionEvaluator, make_evaluator

#: A command that runs the contract objective on the parameters file and prints its result as JSON.
SCRIPT = """\
import json, sys
from agent.testing.evaluators import contract_objective

with open(sys.argv[1]) as f:
    params = json.load(f)
out = contract_objective(params)
if out is not None:
    print(json.dumps(out if isinstance(out, dict) else {"value": out}))
"""
OBJECTIVE = "agent.testing.evaluators:contract_objective"


class TestCommandEvaluator(EvaluatorContract):
    def make_evaluator(self, tmp_path: Path, timeout: float | None = None) -> Evaluator:
        script = tmp_path / "objective.py"
        script.write_text(SCRIPT)
        options = {"command": [sys.executable, str(script), "{params_file}"], "timeout": timeout}
        evaluator = make_evaluator("command", options)
        assert isinstance(evaluator, CommandEvaluator)
        return evaluator


@pytest.mark.slow  # a spawned process per test
class TestFunctionEvaluatorInAChildProcess(EvaluatorContract):
    """With a timeout the objective runs in a spawned child: every rule holds there too."""

    def make_evaluator(self, tmp_path: Path, timeout: float | None = None) -> Evaluator:
        evaluator = make_evaluator("function", {"function": OBJECTIVE, "timeout": timeout or 120})
        assert isinstance(evaluator, FunctionEvaluator)
        return evaluator


class TestFunctionEvaluatorInProcess(EvaluatorContract):
    supports_timeout = False  # a timeout moves the objective to a child process: the class above

    def make_evaluator(self, tmp_path: Path, timeout: float | None = None) -> Evaluator:
        assert timeout is None
        return FunctionEvaluator(contract_objective)

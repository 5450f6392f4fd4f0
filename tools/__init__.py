"""Evaluators: how a candidate is turned into a score (the EVALUATE stage of the loop)."""

from tools.command import CommandEvaluator
from tools.evaluation import Evaluation, Evaluator, ObjectiveOutputError, read_outcome
from tools.function import FunctionEvaluator

__all__ = [
    "CommandEvaluator",
    "Evaluation",
    "Evaluator",
    "FunctionEvaluator",
    "ObjectiveOutputError",
    "read_outcome",
]

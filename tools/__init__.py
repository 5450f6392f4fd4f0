"""Evaluators: how a candidate is turned into a score (the EVALUATE stage of the loop).

Objective kinds are looked up in :data:`EVALUATORS` (see :mod:`tools.registry` for adding one); importing
this package registers the built-in ``command``, ``function`` and ``dataset`` (a pipeline scored on a dev set).
"""

from tools.command import CommandEvaluator, CommandOptions
from tools.evaluation import Evaluation, Evaluator, ObjectiveOutputError, read_outcome
from tools.function import FunctionEvaluator, FunctionOptions
from tools.prompt_eval import DatasetOptions, DevSetEvaluator
from tools.registry import EVALUATORS, EvaluatorContext, make_evaluator

__all__ = [
    "EVALUATORS",
    "CommandEvaluator",
    "CommandOptions",
    "DatasetOptions",
    "DevSetEvaluator",
    "Evaluation",
    "Evaluator",
    "EvaluatorContext",
    "FunctionEvaluator",
    "FunctionOptions",
    "ObjectiveOutputError",
    "make_evaluator",
    "read_outcome",
]

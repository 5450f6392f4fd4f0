"""The evaluator registry: the objective kinds a job file may use (``command``, ``function``, yours).

A kind is named by the key that selects it in a job file's ``[objective]`` table — ``command = [...]`` picks
``command``, ``function = "module:fn"`` picks ``function`` — so its options model must have a field of the
kind's own name; the other fields are its options (``timeout``, ``env``). Register a new kind beside its
code::

    class NotebookOptions(Options):
        notebook: str
        timeout: Duration | None = None

    @EVALUATORS.register("notebook", options=NotebookOptions, example='notebook = "train.ipynb"')
    def notebook(options: NotebookOptions, context: EvaluatorContext) -> Evaluator:
        return NotebookEvaluator(context.folder / options.notebook, options.timeout)

Entry ``meta``: ``example`` (how the kind is written, for the "set exactly one of" message). Test a new kind
with :class:`agent.testing.evaluators.EvaluatorContract`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.registry import Registry
from tools.evaluation import Evaluator

if TYPE_CHECKING:
    from pydantic import BaseModel

    from agent.space import Space

#: Objective kinds by name (the job-file key that selects each).
EVALUATORS: Registry[Evaluator] = Registry("objective kind", field="objective")


@dataclass(frozen=True)
class EvaluatorContext:
    """What an evaluator factory or check may need: the job file's folder, the study's space and metric.

    Attributes:
        folder: where relative paths (a program, a module) are looked up; None for the current directory.
        space: the space; None when unknown (or faulty).
        metric: the study's target metric, for evaluators that pick it out of what they read (a command's
            stdout); None when the study names none.
        parameters: the parameter names checks may refer to (command placeholders), when they are known
            but the space is not: a job file whose parameter definition is faulty still declares its name,
            so the other checks run in the same pass. None means the space's names.
        direction: the study's direction, for evaluators whose score only makes sense one way (a dev-set
            accuracy is maximized); None when unknown.
        model: the study's model spec, for evaluators that call a model and default to the study's.
    """

    folder: Path | None = None
    space: Space | None = None
    metric: str | None = None
    parameters: tuple[str, ...] | None = None
    direction: str | None = None
    model: str | None = None

    def parameter_names(self) -> tuple[str, ...] | None:
        """The parameters a check may refer to; None when unknown (then it cannot check the references)."""
        if self.parameters is not None:
            return self.parameters
        return None if self.space is None else tuple(self.space)


def kinds_in(table: Mapping[str, Any]) -> list[str]:
    """The objective kinds ``table`` selects (exactly one is valid)."""
    return [kind for kind in EVALUATORS.names() if kind in table]


def choose_one() -> str:
    """What to write when a table selects no kind or several: ``set exactly one of command = [...] or ...``."""
    examples = [str(e.meta.get("example") or f"{e.name} = ...") for e in EVALUATORS.entries()]
    listed = examples[0] if len(examples) == 1 else ", ".join(examples[:-1]) + " or " + examples[-1]
    return f"set exactly one of {listed}"


def make_evaluator(
    kind: str, options: Mapping[str, Any] | BaseModel, context: EvaluatorContext | None = None
) -> Evaluator:
    """Build the evaluator of ``kind`` from its options (``{"command": [...], "timeout": "10m"}``).

    Raises:
        ConfigError: unknown kind (the known ones are listed).
        OptionsError: faulty options, or problems the kind's checks found, each named (``objective.timeout: ...``).
    """
    return EVALUATORS.build(kind, options, context or EvaluatorContext(), where="objective")

"""Evaluate a Python callable: in this process, or in a child process when a timeout is set.

The child process is what makes a timeout enforceable: a thread cannot be stopped, a process group can.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import multiprocessing
import os
import signal
import sys
import traceback
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection
from pathlib import Path
from types import ModuleType
from typing import Any

from agent.budget import parse_duration
from agent.registry import Duration, Options
from agent.space import ParamValue
from agent.trial import Trial
from tools.evaluation import Evaluation, tail
from tools.processes import tracked
from tools.registry import EVALUATORS, EvaluatorContext

Objective = Callable[..., Any]


def resolve_callable(spec: str, base_dir: str | Path | None = None) -> Objective:
    """Import ``"package.module:callable"``; ``base_dir`` (a job file's folder) is searched first.

    Raises:
        ValueError: with what to write instead, when the spec is malformed or cannot be imported.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f'expected "module:callable" (e.g. "train:objective"), got {spec!r}')
    try:
        target: Any = _import(module_name, None if base_dir is None else Path(base_dir))
    except ImportError as exc:
        raise ValueError(f"cannot import module {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ValueError(f"module {module_name!r} has no attribute {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"{spec!r} is not callable")
    return target


def _import(module_name: str, base_dir: Path | None) -> ModuleType:
    """Import a module, preferring ``base_dir``: a job's ``train.py`` must win over any other ``train``."""
    if base_dir is None:
        return importlib.import_module(module_name)
    if str(base_dir) not in sys.path:
        sys.path.insert(0, str(base_dir))
    candidate = base_dir.joinpath(*module_name.split(".")).with_suffix(".py")
    loaded = sys.modules.get(module_name)
    if loaded is None or not candidate.is_file() or Path(getattr(loaded, "__file__", None) or "") == candidate:
        return importlib.import_module(module_name)
    # Another module of that name was imported first (another job's, or the standard library's): load this
    # job's file under a name of its own instead of silently running the other one.
    unique = f"tunesmith_job_{abs(hash(str(candidate)))}_{module_name.replace('.', '_')}"
    spec = importlib.util.spec_from_file_location(unique, candidate)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[unique] = module
    spec.loader.exec_module(module)
    return module


def _wants_trial(fn: Objective) -> bool:
    """True when ``fn`` takes a second argument for the trial: ``f(params, trial)``."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    required = [
        p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(required) >= 2 or any(p.name == "trial" for p in parameters)


def _call(fn: Objective, params: Mapping[str, ParamValue], trial: Trial) -> Evaluation:
    try:
        output = fn(dict(params), trial) if _wants_trial(fn) else fn(dict(params))
    except Exception as exc:
        return Evaluation(None, error=f"{type(exc).__name__}: {exc}", feedback=tail(traceback.format_exc()))
    return Evaluation(output)


def _child_main(
    target: Objective | str,
    base_dir: str | None,
    params: Mapping[str, ParamValue],
    trial: Trial,
    conn: Connection,
) -> None:
    os.setsid()  # its own process group, so a timeout kills whatever it started too
    fn = resolve_callable(target, base_dir) if isinstance(target, str) else target
    conn.send(_call(fn, params, trial))
    conn.close()


class FunctionEvaluator:
    """Calls ``objective(params)`` or ``objective(params, trial)``.

    Args:
        objective: a callable, or ``"module:callable"``.
        timeout: seconds or a duration string. With a timeout the call runs in a fresh (spawned) child
            process that is killed, with its children, when time runs out; the objective must then be
            importable (a ``"module:callable"`` string or a module-level function).
        base_dir: folder to import ``"module:callable"`` from (a job file's folder).
    """

    def __init__(
        self,
        objective: Objective | str,
        timeout: float | str | None = None,
        base_dir: str | Path | None = None,
    ) -> None:
        self._base_dir = None if base_dir is None else str(base_dir)
        self._fn = resolve_callable(objective, base_dir) if isinstance(objective, str) else objective
        self._target: Objective | str = objective
        self.timeout_s = None if timeout is None else parse_duration(timeout)

    def evaluate(self, params: Mapping[str, ParamValue], trial: Trial) -> Evaluation:
        if self.timeout_s is None:
            return _call(self._fn, params, trial)
        return self._evaluate_in_child(params, trial)

    def _evaluate_in_child(self, params: Mapping[str, ParamValue], trial: Trial) -> Evaluation:
        context = multiprocessing.get_context("spawn")
        receiver, sender = context.Pipe(duplex=False)
        child = context.Process(
            target=_child_main, args=(self._target, self._base_dir, dict(params), trial, sender), daemon=True
        )
        try:
            child.start()
        except Exception as exc:  # e.g. a lambda cannot be sent to a spawned process
            return Evaluation(
                None,
                error=f"cannot start the objective in a child process ({type(exc).__name__}: {exc}); "
                'with a timeout the objective must be importable, e.g. "module:callable"',
            )
        sender.close()
        result: Evaluation | None = None
        with tracked(child.pid or 0):  # an interrupted run kills it, with its whole tree
            timed_out = not receiver.poll(self.timeout_s)
        if timed_out and child.pid is not None:
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:  # it had not yet made its own group
                child.kill()
        elif not timed_out:
            try:
                result = receiver.recv()
            except EOFError:  # the child died without answering
                result = None
        child.join()
        receiver.close()
        if result is not None:
            return result
        if timed_out:
            return Evaluation(None, error=f"timed out after {self.timeout_s:g}s")
        return Evaluation(None, error=f"the objective's process died (exit code {child.exitcode})")


class FunctionOptions(Options):
    """The ``function`` objective in a job file: ``function = "module:callable"`` plus ``timeout``."""

    function: str
    timeout: Duration | None = None


def check_function(options: Mapping[str, Any], context: EvaluatorContext | None) -> list[str]:
    """Import the callable now: a typo must be reported before the study starts, not at its first trial.

    This runs the module's top-level code, the only way to know the function exists.
    """
    spec = options.get("function")
    if not isinstance(spec, str):
        return []  # the schema reports it
    try:
        resolve_callable(spec, context.folder if context is not None else None)
    except ValueError as exc:
        return [f"function: {exc}"]
    return []


@EVALUATORS.register("function", options=FunctionOptions, check=check_function, example='function = "module:fn"')
def _function(options: FunctionOptions, context: EvaluatorContext | None) -> FunctionEvaluator:
    folder = context.folder if context is not None else None
    return FunctionEvaluator(options.function, timeout=options.timeout, base_dir=folder)

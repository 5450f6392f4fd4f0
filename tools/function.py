"""Evaluate a Python callable: in this process, or in a child process when a timeout is set.

The child process is what makes a timeout enforceable: a thread cannot be stopped, a process tree can. It
runs without our secrets, dies with this process, and is killed with everything it started when its trial
ends (:mod:`tools.processes`). An objective that calls ``sys.exit`` fails its trial, in either place: it
must not end the whole run.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import multiprocessing
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import Field

from agent.budget import parse_duration
from agent.registry import Duration, Options
from agent.secrets import objective_environment
from agent.space import ParamValue
from agent.trial import Trial
from tools.evaluation import Evaluation, tail
from tools.processes import (
    TOKEN_ENV,
    EnvNames,
    die_with_parent,
    kill_tree,
    pass_env_names,
    tracked,
    trial_workspace,
)
from tools.registry import EVALUATORS, EvaluatorContext

Objective = Callable[..., Any]
#: How long a child that answered may take to exit on its own before it is killed.
_EXIT_GRACE_S = 1.0


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
    """Call the objective; what it raises, ``sys.exit`` included, is a failed evaluation.

    ``SystemExit`` is caught because a script turned into an objective often ends with ``sys.exit(code)``:
    in this process that would end the whole run. KeyboardInterrupt still propagates (the user's Ctrl-C).
    """
    try:
        output = fn(dict(params), trial) if _wants_trial(fn) else fn(dict(params))
    except Exception as exc:
        return Evaluation(None, error=f"{type(exc).__name__}: {exc}", feedback=tail(traceback.format_exc()))
    except SystemExit as exc:
        return Evaluation(None, error=_exit_error(exc), feedback=tail(traceback.format_exc()))
    return Evaluation(output)


def _exit_error(exc: SystemExit) -> str:
    code = "" if exc.code is None else repr(exc.code)
    return f"the objective called sys.exit({code}); return a value or raise an exception instead"


@dataclass(frozen=True)
class _ChildJob:
    """What the spawned child needs: the objective, one trial, our pid and the environment to run with."""

    target: Objective | str
    base_dir: str | None
    params: dict[str, ParamValue]
    trial: Trial
    parent_pid: int
    environment: dict[str, str]


def _child_main(job: _ChildJob, conn: Connection) -> None:
    die_with_parent(job.parent_pid)
    os.setsid()  # its own process group, so a timeout kills whatever it started too
    # It inherited our environment, secrets included; what it starts gets the filtered one and the token.
    os.environ.clear()
    os.environ.update(job.environment)
    fn = resolve_callable(job.target, job.base_dir) if isinstance(job.target, str) else job.target
    conn.send(_call(fn, job.params, job.trial))
    conn.close()


def _receive(receiver: Connection) -> Evaluation | None:
    try:
        result: Evaluation = receiver.recv()
    except EOFError:  # the child died without answering
        return None
    return result


class FunctionEvaluator:
    """Calls ``objective(params)`` or ``objective(params, trial)``.

    Args:
        objective: a callable, or ``"module:callable"``.
        timeout: seconds or a duration string. With a timeout the call runs in a fresh (spawned) child
            process that is killed, with all its processes, when time runs out or the trial ends; the
            objective must then be importable (a ``"module:callable"`` string or a module-level function).
        base_dir: folder to import ``"module:callable"`` from (a job file's folder).
        pass_env: names of secret variables the objective may have (``["HF_TOKEN"]``). In the child process
            (a timeout is set) the others (``*_API_KEY``, ``*_TOKEN``, ``*SECRET*``, ``*PASSWORD*``, the
            model's key) are removed from ``os.environ`` before the objective runs, so what it starts
            inherits none; the child's own ``/proc/self/environ`` still shows what it started with. Without a
            timeout the objective runs in this process and shares its environment, secrets included (what
            it prints is still scrubbed of them before it is stored).

    Raises:
        ValueError: the objective cannot be imported, or ``pass_env`` holds a bad name.
    """

    def __init__(
        self,
        objective: Objective | str,
        timeout: float | str | None = None,
        base_dir: str | Path | None = None,
        pass_env: Iterable[str] = (),
    ) -> None:
        self._base_dir = None if base_dir is None else str(base_dir)
        self._fn = resolve_callable(objective, base_dir) if isinstance(objective, str) else objective
        self._target: Objective | str = objective
        self.timeout_s = None if timeout is None else parse_duration(timeout)
        self.pass_env = pass_env_names(pass_env)

    def evaluate(self, params: Mapping[str, ParamValue], trial: Trial) -> Evaluation:
        if self.timeout_s is None:
            return _call(self._fn, params, trial)
        return self._evaluate_in_child(params, trial)

    def _evaluate_in_child(self, params: Mapping[str, ParamValue], trial: Trial) -> Evaluation:
        with trial_workspace(trial.number) as workspace:
            job = _ChildJob(
                self._target,
                self._base_dir,
                dict(params),
                trial,
                os.getpid(),
                objective_environment(self.pass_env, {TOKEN_ENV: workspace.token}),
            )
            return self._run_child(job, workspace.token)

    def _run_child(self, job: _ChildJob, token: str) -> Evaluation:
        """Run ``job`` in a spawned child; whatever happens, the child and all it started are gone after."""
        context = multiprocessing.get_context("spawn")
        receiver, sender = context.Pipe(duplex=False)
        child = context.Process(target=_child_main, args=(job, sender), daemon=True)
        try:
            child.start()
        except Exception as exc:  # e.g. a lambda cannot be sent to a spawned process
            receiver.close()
            return Evaluation(
                None,
                error=f"cannot start the objective in a child process ({type(exc).__name__}: {exc}); "
                'with a timeout the objective must be importable, e.g. "module:callable"',
            )
        finally:
            sender.close()
        assert child.pid is not None  # set by start()
        try:
            with tracked(child.pid, token):  # an interrupted run kills it from another thread
                answered = receiver.poll(self.timeout_s)
            result = _receive(receiver) if answered else None
            if answered:  # let it exit on its own (flush its output) before anything it left is killed
                child.join(_EXIT_GRACE_S)
        finally:
            kill_tree(child.pid, token)
            child.join()
            receiver.close()
        if result is not None:
            return result
        if not answered:
            return Evaluation(None, error=f"timed out after {self.timeout_s:g}s")
        return Evaluation(None, error=f"the objective's process died (exit code {child.exitcode})")


class FunctionOptions(Options):
    """The ``function`` objective in a job file: ``function = "module:callable"`` plus ``timeout`` and
    ``pass_env`` (the secret variables the objective may have with a timeout, e.g. ``["HF_TOKEN"]``)."""

    function: str
    timeout: Duration | None = None
    pass_env: EnvNames = Field(default_factory=list)


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
    return FunctionEvaluator(options.function, timeout=options.timeout, base_dir=folder, pass_env=options.pass_env)

"""Executors: where trials are evaluated (inline, threads, processes; Ray plugs into the same seam)."""

from __future__ import annotations

from agent.errors import ConfigError
from agent.executors.base import Executor
from agent.executors.inline import InlineExecutor
from agent.executors.processes import ProcessExecutor
from agent.executors.threads import ThreadExecutor

#: The executors ``optimize(executor=...)`` and the job file's ``study.executor`` may name.
EXECUTOR_KINDS = ("inline", "threads", "processes")


def make_executor(kind: str | Executor, workers: int) -> Executor:
    """The executor ``kind`` names, sized for ``workers``; ``"inline"`` with more than one worker means threads."""
    if isinstance(kind, Executor):
        return kind
    if kind == "processes":
        return ProcessExecutor(workers)
    if kind == "threads" or (kind == "inline" and workers > 1):
        return ThreadExecutor(workers)
    if kind == "inline":
        return InlineExecutor()
    raise ConfigError(f"unknown executor {kind!r}; expected one of {', '.join(EXECUTOR_KINDS)}", field="executor")


__all__ = ["EXECUTOR_KINDS", "Executor", "InlineExecutor", "ProcessExecutor", "ThreadExecutor", "make_executor"]

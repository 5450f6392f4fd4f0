"""A study held open for a person at a terminal or an assistant over MCP: what their commands act on.

A study opened from its job file can run trials (the job names the objective); one opened by name can be
looked at, steered, asked and told, but not run: its objective is known only to the job file that made it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent.errors import TunesmithError

if TYPE_CHECKING:
    from agent.jobfile import Job
    from agent.loop import RunSummary
    from agent.study import Study
    from agent.trial import Trial
    from tools.evaluation import Evaluator


class SessionError(TunesmithError, ValueError):
    """A command that cannot be carried out as asked; the message says what to do instead."""


def open_job_study(job: Job) -> tuple[Study, int]:
    """Open (or create) the job's study and enqueue its ``[[enqueue]]`` points; returns the study and how many of
    those points are new to it (points added to the job file since its last run)."""
    from agent.study import study_from_config

    study = study_from_config(job.config, job.space, load_if_exists=True, objective=job.objective.identity)
    new_points = sum(study.enqueue(point, once=True) for point in job.enqueue)
    return study, new_points


@dataclass
class Session:
    """One open study, who is steering it, and (when opened from a job file) how to evaluate its trials.

    Attributes:
        study: the study.
        author: recorded with every steering event (``"chat"``, ``"mcp"``).
        job: the job file the study was opened from, None when it was opened by name.
        folder: where relative paths (a report's) are written: the job file's folder, else the current one.
        on_trial: called with each trial a run records, as it is recorded (a terminal prints it).
    """

    study: Study
    author: str
    job: Job | None = None
    folder: Path = dataclasses.field(default_factory=Path.cwd)
    on_trial: Callable[[Trial], None] | None = None
    _evaluator: Evaluator | None = None

    @classmethod
    def of_job(cls, path: str | Path, author: str) -> Session:
        """The study of the job file at ``path``, created on first use (a budget is not required: a person
        running trials a few at a time is the budget)."""
        from agent.jobfile import load_job

        job = load_job(path, require_budget=False)
        study, _ = open_job_study(job)
        return cls(study, author, job, job.path.parent)

    @classmethod
    def of_study(cls, name: str, storage: str, author: str) -> Session:
        """A stored study by name: it can be looked at and steered, not run."""
        from agent.study import load_study

        return cls(load_study(name, storage), author)

    def run(self, trials: int, on_trial: Callable[[Trial], None] | None = None) -> RunSummary:
        """Run ``trials`` more trials with the job's objective, workers and limits (its token, money and wall-time
        budget; not its trial total: a person asking for N more means N more).

        Raises:
            SessionError: the study was opened by name, so there is no objective to run.
            KeyboardInterrupt: the running trials were marked interrupted and their processes ended; every
                trial recorded before stays.
        """
        if self.job is None:
            raise SessionError(
                f"study {self.study.name!r} was opened by name, so its objective is unknown: open it from its job "
                "file to run trials (tunesmith chat JOB.toml; over MCP, load_study with job), or evaluate points "
                "yourself (ask and tell)"
            )
        from agent.budget import Budget

        job = self.job
        if self._evaluator is None:
            self._evaluator = job.evaluator()
        budget = dataclasses.replace(job.config.budget.to_budget() or Budget(), trials=None)
        callbacks = [] if on_trial is None else [lambda _study, trial: on_trial(trial)]
        return self.study.optimize(
            self._evaluator,
            n_trials=trials,
            budget=budget,
            workers=job.config.workers,
            executor=job.config.executor,
            callbacks=callbacks,
            requeue_interrupted=job.config.requeue_interrupted,
        )

    def resolve(self, path: str) -> Path:
        """``path`` as the user means it: relative to the session's folder."""
        given = Path(path).expanduser()
        return given if given.is_absolute() else self.folder / given

    def close(self) -> None:
        self.study.close()

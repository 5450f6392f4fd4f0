"""Evaluate a candidate by running a command: argv placeholders, never a shell.

Each argv item is a template (``"--lr={lr}"``) filled with :meth:`str.format_map`; the filled item is
passed to the program as exactly one argument, so a value such as ``"x; touch pwned"`` is data, never
shell code. ``{python}`` is the interpreter running tunesmith, so that ``["{python}", "train.py"]`` finds
the packages of tunesmith's environment without activating it.

The result is the last line of stdout that is a JSON object holding the study's metric
(``{"step": 100, "accuracy": 0.91}``); JSON lines without it are progress reports. A study without a
metric takes the last JSON object line, whatever it holds.

The command runs without our secrets (``agent.secrets.objective_environment``; ``pass_env`` names the ones it
may have). When its trial ends, however it ends, it is killed with everything it started
(:mod:`tools.processes`): a timeout, a success that left a background job running, Ctrl-C.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import string
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import Field

from agent.budget import parse_duration
from agent.registry import Duration, Options
from agent.secrets import objective_environment
from agent.space import ParamValue
from agent.trial import Trial
from tools.evaluation import Evaluation, tail
from tools.processes import TOKEN_ENV, EnvNames, child_preexec, kill_tree, pass_env_names, tracked, trial_workspace
from tools.registry import EVALUATORS, EvaluatorContext

#: Placeholders that are always available besides the parameters.
BUILTIN_PLACEHOLDERS = ("trial_number", "params_file", "python")
#: Only the end of a command's stdout is searched for its result.
_STDOUT_TAIL_BYTES = 1 << 20
_KILL_GRACE_S = 3.0


def placeholders(argv: Sequence[str]) -> list[str]:
    """The ``{name}`` fields used in ``argv`` (format specs and conversions stripped).

    Raises:
        ValueError: an item is not a valid template (e.g. an unmatched ``{``).
    """
    names = []
    for item in argv:
        for _, field, _, _ in string.Formatter().parse(item):
            if field is not None:
                names.append(field.split(".")[0].split("[")[0])
    return names


def last_json_object(stdout: str, metric: str | None = None) -> dict[str, Any] | None:
    """The last line of ``stdout`` that is a JSON object holding ``metric`` (any JSON object when None)."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if not (line.startswith("{") and line.endswith("}")):
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and (metric is None or metric in obj):
            return obj
    return None


def _no_result(stdout: str, metric: str | None) -> str:
    """Why no result was read from ``stdout``, and what to print instead."""
    example = json.dumps({metric or "accuracy": 0.93})
    last = last_json_object(stdout) if metric is not None else None
    if last is None:
        return f"the command printed no JSON object on stdout; print one as its last line, e.g. {example}"
    keys = ", ".join(last) or "nothing"
    return (
        f"the command printed no JSON object with {json.dumps(metric)} on stdout (the last one has: {keys}); "
        f"print e.g. {example} as its last line"
    )


def _read_tail(path: Path, limit: int) -> str:
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - limit))
        return f.read().decode("utf-8", errors="replace")


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the command's process group and give it a grace period to exit on its own (save, clean up)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(_KILL_GRACE_S)


class CommandEvaluator:
    """Runs ``argv`` once per candidate.

    Args:
        argv: the command as a list; items may hold ``{param}``, ``{trial_number}``, ``{params_file}`` (a JSON
            file with every parameter, for long Text/Code values) and ``{python}`` (this interpreter).
        timeout: seconds or a duration string; the command and all its processes are killed when it runs out.
        cwd: working directory (a job file's folder by default in the CLI).
        env: extra environment variables. The command also gets ``TUNESMITH_TRIAL_NUMBER``,
            ``TUNESMITH_PARAMS_FILE`` and ``TUNESMITH_TRIAL_TOKEN`` (what marks the trial's processes).
        pass_env: names of secret variables of ours the command may have (``["HF_TOKEN"]``); the others
            (``*_API_KEY``, ``*_TOKEN``, ``*SECRET*``, ``*PASSWORD*``, the model's key) are left out, because
            what the command prints lands in the study and in the model's prompt.
        metric: the study's metric: the result is the last JSON line holding it, and JSON lines without it
            (``{"step": 3, "lr": 0.01}``) are progress; None takes the last JSON line.

    Raises:
        ValueError: ``argv`` is not a non-empty list of valid templates, or ``pass_env`` holds a bad name.
    """

    def __init__(
        self,
        argv: Sequence[str],
        timeout: float | str | None = None,
        cwd: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        pass_env: Iterable[str] = (),
        metric: str | None = None,
    ) -> None:
        if isinstance(argv, str) or not argv or not all(isinstance(a, str) for a in argv):
            raise ValueError(
                'the command must be a non-empty list of strings, e.g. ["python", "train.py", "--lr", "{lr}"]'
            )
        placeholders(argv)  # raises on a malformed template now rather than at the first trial
        self.argv = list(argv)
        self.timeout_s = None if timeout is None else parse_duration(timeout)
        self.cwd = None if cwd is None else str(cwd)
        self.env = dict(env or {})
        self.pass_env = pass_env_names(pass_env)
        self.metric = metric

    def evaluate(self, params: Mapping[str, ParamValue], trial: Trial) -> Evaluation:
        with trial_workspace(trial.number) as workspace:
            workdir = workspace.folder
            params_file = workdir / "params.json"
            params_file.write_text(json.dumps(dict(params)))
            values: dict[str, Any] = {
                **params,
                "trial_number": trial.number,
                "params_file": str(params_file),
                "python": sys.executable,
            }
            argv = []
            for i, item in enumerate(self.argv):
                try:
                    argv.append(item.format_map(values))
                except (KeyError, IndexError, ValueError, AttributeError) as exc:
                    return Evaluation(
                        None,
                        error=f"cannot fill command item {i} ({item!r}): {exc!r}; placeholders available: "
                        f"{', '.join(values)} (write {{{{ and }}}} for literal braces)",
                    )
            stdout_path, stderr_path = workdir / "stdout", workdir / "stderr"
            env = objective_environment(
                self.pass_env,
                {
                    **self.env,
                    "TUNESMITH_TRIAL_NUMBER": str(trial.number),
                    "TUNESMITH_PARAMS_FILE": str(params_file),
                    TOKEN_ENV: workspace.token,
                },
            )
            with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
                try:
                    proc = subprocess.Popen(
                        argv,
                        stdout=out,
                        stderr=err,
                        stdin=subprocess.DEVNULL,
                        cwd=self.cwd,
                        env=env,
                        start_new_session=True,
                        preexec_fn=child_preexec(),
                    )
                except OSError as exc:
                    return Evaluation(None, error=f"cannot start {argv[0]!r}: {exc.strerror or exc}")
                returncode = self._wait(proc, workspace.token)
            stdout = _read_tail(stdout_path, _STDOUT_TAIL_BYTES)
            stderr = tail(_read_tail(stderr_path, 8192))
        if returncode is None:
            return Evaluation(
                None,
                error=f"timed out after {self.timeout_s:g}s; the command and all its processes were killed",
                feedback=stderr or None,
            )
        if returncode < 0:
            name = signal.Signals(-returncode).name
            return Evaluation(
                None,
                error=f"the command was killed by signal {-returncode} ({name}; SIGKILL often means out of memory)",
                feedback=stderr or None,
            )
        if returncode != 0:
            return Evaluation(None, error=f"the command exited with status {returncode}", feedback=stderr or None)
        result = last_json_object(stdout, self.metric)
        if result is None:
            return Evaluation(
                None,
                error=_no_result(stdout, self.metric),
                feedback=tail(stdout + ("\n" + stderr if stderr else "")) or None,
            )
        return Evaluation(result, feedback=stderr or None)

    def _wait(self, proc: subprocess.Popen[bytes], token: str) -> int | None:
        """The command's exit status; None when it timed out.

        However the wait ends (an exit, the timeout, Ctrl-C, a cancel that kills it from another thread),
        every process of the trial is killed before this returns: a background job the command left running
        would hold a GPU or write into the next trial's files.
        """
        try:
            with tracked(proc.pid, token):
                try:
                    return proc.wait(self.timeout_s)
                except subprocess.TimeoutExpired:
                    _terminate(proc)
                    return None
        finally:
            kill_tree(proc.pid, token)
            proc.wait()


class CommandOptions(Options):
    """The ``command`` objective in a job file: ``command = [...]`` plus ``timeout``, ``env`` and ``pass_env``
    (the secret variables the command may have, e.g. ``["HF_TOKEN"]``)."""

    command: list[str]
    timeout: Duration | None = None
    env: dict[str, str] = Field(default_factory=dict)
    pass_env: EnvNames = Field(default_factory=list)


def check_command(options: Mapping[str, Any], context: EvaluatorContext | None) -> list[str]:
    """What the schema cannot see: a non-empty argv, valid templates, known placeholders, the program
    (not looked for when it is a placeholder such as ``{python}``)."""
    argv = options.get("command")
    if argv == []:
        return ['command: must not be empty, e.g. ["python", "train.py", "--lr", "{lr}"]']
    if not isinstance(argv, list) or not all(isinstance(item, str) for item in argv):
        return []  # the schema reports it
    context = context or EvaluatorContext()
    declared = context.parameter_names()
    folder = context.folder or Path.cwd()
    problems = []
    known = [*(declared or ()), *BUILTIN_PLACEHOLDERS]
    for i, item in enumerate(argv):
        try:
            names = placeholders([item])
        except ValueError as exc:
            problems.append(f"command[{i}]: not a valid template ({exc}); write {{{{ for a literal {{")
            continue
        for name in names:
            if declared is not None and name not in known:
                problems.append(f"command[{i}]: placeholder {{{name}}} is not a parameter (known: {', '.join(known)})")
    program = argv[0]
    if "{" not in program and shutil.which(program) is None and not (folder / program).exists():
        problems.append(f"command[0]: program {program!r} not found on PATH or in {folder}")
    return problems


@EVALUATORS.register(
    "command", options=CommandOptions, check=check_command, example='command = ["python", "train.py", "{lr}"]'
)
def _command(options: CommandOptions, context: EvaluatorContext | None) -> CommandEvaluator:
    context = context or EvaluatorContext()
    return CommandEvaluator(
        options.command,
        timeout=options.timeout,
        cwd=context.folder,
        env=options.env,
        pass_env=options.pass_env,
        metric=context.metric,
    )

"""Evaluate a candidate by running a command: argv placeholders, never a shell.

Each argv item is a template (``"--lr={lr}"``) filled with :meth:`str.format_map`; the filled item is
passed to the program as exactly one argument, so a value such as ``"x; touch pwned"`` is data, never
shell code. ``{python}`` is the interpreter running tunesmith, so that ``["{python}", "train.py"]`` finds
the packages of tunesmith's environment without activating it.

The result is the last line of stdout that is a JSON object holding the study's metric
(``{"step": 100, "accuracy": 0.91}``); JSON lines without it are progress reports. A study without a
metric takes the last JSON object line, whatever it holds.

A ``cascade`` of cheap stages (``it imports``, ``the small tests pass``) may run first: a candidate that
fails one costs seconds, not a full evaluation, and each stage's time is kept as a metric. With Code
parameters everything runs in a sandbox (:mod:`tools.sandbox`): a fresh copy of the folder holding the
candidate's code, under limits, without secrets or network, removed afterwards (:mod:`tools.runners`).

The command runs without our secrets (``agent.secrets.objective_environment``; ``pass_env`` names the ones it
may have). When its trial ends, however it ends, it is killed with everything it started
(:mod:`tools.processes`): a timeout, a success that left a background job running, Ctrl-C.
"""

from __future__ import annotations

import json
import shutil
import signal
import string
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ByteSize, Field

from agent.budget import parse_duration
from agent.evolution.regions import CodeLocation, RegionError, splice_region
from agent.registry import Duration, Options
from agent.secrets import objective_environment
from agent.space import Code, ParamValue
from agent.trial import SANDBOX_NOTE, Trial
from tools.evaluation import Evaluation, tail
from tools.processes import EnvNames, pass_env_names, trial_workspace
from tools.registry import EVALUATORS, EvaluatorContext
from tools.runners import EvaluatorPlace, Outcome, Place, open_place
from tools.sandbox import Limits

#: Placeholders that are always available besides the parameters.
BUILTIN_PLACEHOLDERS = ("trial_number", "params_file", "python", "candidate_dir")


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


@dataclass(frozen=True)
class Stage:
    """A cheap check run before the command, in the same place (a cascade): a candidate that fails it costs
    seconds instead of a full evaluation. It must exit 0; the numbers of its last JSON line are kept as
    metrics, with its time as ``<name>_seconds``.
    """

    name: str
    argv: list[str]
    timeout_s: float | None = None


class CommandEvaluator:
    """Runs ``argv`` once per candidate, after its ``cascade`` stages.

    Args:
        argv: the command as a list; items may hold ``{param}``, ``{trial_number}``, ``{params_file}`` (a JSON
            file with every parameter, for long Text/Code values) and ``{python}`` (this interpreter).
        timeout: seconds or a duration string; the command and all its processes are killed when it runs out.
        cwd: working directory (a job file's folder by default in the CLI); the folder a sandbox copies.
        env: extra environment variables. The command also gets ``TUNESMITH_TRIAL_NUMBER``,
            ``TUNESMITH_PARAMS_FILE`` and ``TUNESMITH_TRIAL_TOKEN`` (what marks the trial's processes).
        pass_env: names of secret variables of ours the command may have (``["HF_TOKEN"]``); the others
            (``*_API_KEY``, ``*_TOKEN``, ``*SECRET*``, ``*PASSWORD*``, the model's key) are left out, because
            what the command prints lands in the study and in the model's prompt.
        metric: the study's metric: the result is the last JSON line holding it, and JSON lines without it
            (``{"step": 3, "lr": 0.01}``) are progress; None takes the last JSON line.
        cascade: stages run first, in order; the first that fails fails the trial.
        sandbox: the limits of a fresh copy of ``cwd`` per candidate; None runs everything in ``cwd`` itself.
            Without ``candidate``, every stage and the command run in the copy.
        code: the Code parameters that live in files: name -> where (the candidate is written there, in the
            sandbox's copy; the user's files are never touched).
        candidate: the space has Code parameters: the stages and the command are the user's trusted evaluator,
            run in ``cwd``; the candidate runs only where the evaluator starts it (:mod:`tools.candidate`), in
            the sandbox, and a command that never started it fails its trial (it scored the user's code).

    Raises:
        ValueError: ``argv`` is not a non-empty list of valid templates, ``pass_env`` holds a bad name, or code
            is to be written without a sandbox.
    """

    def __init__(
        self,
        argv: Sequence[str],
        timeout: float | str | None = None,
        cwd: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        pass_env: Iterable[str] = (),
        metric: str | None = None,
        cascade: Sequence[Stage] = (),
        sandbox: Limits | None = None,
        code: Mapping[str, CodeLocation] | None = None,
        candidate: bool = False,
    ) -> None:
        for command in (argv, *(stage.argv for stage in cascade)):
            if isinstance(command, str) or not command or not all(isinstance(a, str) for a in command):
                raise ValueError(
                    'the command must be a non-empty list of strings, e.g. ["python", "train.py", "--lr", "{lr}"]'
                )
            placeholders(command)  # raises on a malformed template now rather than at the first trial
        if (code or candidate) and sandbox is None:
            raise ValueError("code parameters are written into a sandbox's copy of the folder: give sandbox=Limits()")
        self.argv = list(argv)
        self.timeout_s = None if timeout is None else parse_duration(timeout)
        self.folder = Path(cwd) if cwd is not None else Path.cwd()
        self.env = dict(env or {})
        self.pass_env = pass_env_names(pass_env)
        self.metric = metric
        self.cascade = list(cascade)
        self.sandbox = sandbox
        self.code = dict(code or {})
        self.candidate = candidate

    def evaluate(self, params: Mapping[str, ParamValue], trial: Trial) -> Evaluation:
        try:
            files = {
                location.file: splice_region(
                    (self.folder / location.file).read_text(), location.region, str(params[name]), file=location.file
                )
                for name, location in self.code.items()
            }
        except (OSError, RegionError) as exc:
            return Evaluation(None, error=f"cannot place the candidate's code: {exc}")
        with trial_workspace(trial.number) as workspace:
            try:
                with open_place(
                    self.folder,
                    workspace,
                    self.sandbox,
                    files,
                    json.dumps(dict(params)),
                    candidate=self.candidate,
                    pass_env=self.pass_env,
                ) as place:
                    return self._stages_then_command(place, params, trial)
            except OSError as exc:
                return Evaluation(None, error=f"cannot run the command: {exc.strerror or exc}")

    def _stages_then_command(self, place: Place, params: Mapping[str, ParamValue], trial: Trial) -> Evaluation:
        values: dict[str, Any] = {
            **params,
            "trial_number": trial.number,
            "params_file": str(place.params_file),
            "python": sys.executable,
            "candidate_dir": str(place.candidate_dir),
        }
        env = objective_environment(
            self.pass_env,
            {**self.env, "TUNESMITH_TRIAL_NUMBER": str(trial.number), "TUNESMITH_PARAMS_FILE": str(place.params_file)},
        )
        kept: dict[str, float] = {}
        notes: list[str] = []
        for stage in [*self.cascade, Stage("", self.argv, self.timeout_s)]:
            what = f"stage {stage.name!r}" if stage.name else "the command"
            argv = _filled(stage.argv, values)
            if isinstance(argv, str):
                return Evaluation(None, error=f"{what}: {argv}" if stage.name else argv)
            try:
                outcome = place.run(argv, stage.timeout_s, env)
            except OSError as exc:
                return Evaluation(None, error=f"cannot start {argv[0]!r}: {exc.strerror or exc}")
            notes += [note for note in outcome.notes if note not in notes]
            failure = _failure(outcome, what, stage.timeout_s)
            if failure is not None:
                return Evaluation(None, error=failure, feedback=_feedback(outcome.stderr, notes))
            if not stage.name:
                if isinstance(place, EvaluatorPlace) and not place.candidate_runs():
                    return Evaluation(None, error=NEVER_RAN, feedback=_feedback(outcome.stderr, notes))
                result = last_json_object(outcome.stdout, self.metric)
                if result is None:
                    shown = tail(outcome.stdout + ("\n" + outcome.stderr if outcome.stderr else ""))
                    return Evaluation(None, error=_no_result(outcome.stdout, self.metric), feedback=shown or None)
                return Evaluation({**kept, **result}, feedback=_feedback(outcome.stderr, notes))
            printed = last_json_object(outcome.stdout) or {}
            kept.update({k: v for k, v in printed.items() if isinstance(v, int | float) and not isinstance(v, bool)})
            kept[f"{stage.name}_seconds"] = outcome.seconds
        raise AssertionError("the command is the last stage")  # pragma: no cover


#: Why a trial whose evaluator never started the candidate failed.
NEVER_RAN = (
    "the evaluator never ran the candidate: with Code parameters the command and its cascade run outside the "
    "sandbox, on the user's files, and start the candidate with tools.candidate (Candidate.from_env().functions"
    "(...) or .run([...])); see the README, 'Evaluating generated code'"
)


def _filled(argv: Sequence[str], values: Mapping[str, Any]) -> list[str] | str:
    """``argv`` with its placeholders filled, or why it cannot be."""
    filled = []
    for i, item in enumerate(argv):
        try:
            filled.append(item.format_map(values))
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            return (
                f"cannot fill command item {i} ({item!r}): {exc!r}; placeholders available: "
                f"{', '.join(values)} (write {{{{ and }}}} for literal braces)"
            )
    return filled


def _failure(outcome: Outcome, what: str, timeout_s: float | None) -> str | None:
    """Why a stage or the command failed, one line; None when it exited 0."""
    if outcome.returncode is None:
        return f"timed out after {timeout_s:g}s; {what} and all its processes were killed"
    if outcome.returncode < 0:
        name = signal.Signals(-outcome.returncode).name
        return f"{what} was killed by signal {-outcome.returncode} ({name}; SIGKILL often means out of memory)"
    if outcome.returncode != 0:
        return f"{what} exited with status {outcome.returncode}"
    return None


def _feedback(stderr: str, notes: Sequence[str]) -> str | None:
    """What the trial keeps as feedback: what the place could not enforce, then the stderr tail."""
    text = "\n".join([*(SANDBOX_NOTE + note for note in notes), *([stderr] if stderr else [])])
    return text or None


class StageOptions(Options):
    """One ``cascade`` stage: ``{ name = "tests", command = ["{python}", "check.py"], timeout = "30s" }``."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="a word: it names the stage's metrics")
    command: list[str]
    timeout: Duration | None = None


class SandboxOptions(Options):
    """``sandbox = { memory = "2GB", cpu_time = "2m", processes = 64, file_size = "100MB", network = false }``."""

    cpu_time: Duration | None = Limits.cpu_time_s
    memory: ByteSize | None = Field(default=ByteSize(Limits.memory_bytes or 0))
    processes: int | None = Field(default=Limits.processes, ge=1)
    file_size: ByteSize | None = Field(default=ByteSize(Limits.file_size_bytes or 0))
    network: bool = Limits.network

    def limits(self) -> Limits:
        return Limits(
            cpu_time_s=self.cpu_time,
            memory_bytes=None if self.memory is None else int(self.memory),
            processes=self.processes,
            file_size_bytes=None if self.file_size is None else int(self.file_size),
            network=self.network,
        )


class CommandOptions(Options):
    """The ``command`` objective in a job file: ``command = [...]`` plus ``timeout``, ``env``, ``pass_env`` (the
    secret variables the command may have, e.g. ``["HF_TOKEN"]``), ``cascade`` (cheap stages first) and
    ``sandbox`` (``true``, ``false`` or limits; on by default when the space has Code parameters)."""

    command: list[str]
    timeout: Duration | None = None
    env: dict[str, str] = Field(default_factory=dict)
    pass_env: EnvNames = Field(default_factory=list)
    cascade: list[StageOptions] = Field(default_factory=list)
    sandbox: bool | SandboxOptions | None = None


def check_command(options: Mapping[str, Any], context: EvaluatorContext | None) -> list[str]:
    """What the schema cannot see: non-empty argvs, valid templates, known placeholders, the program (not looked
    for when it is a placeholder such as ``{python}``), and generated code kept in the sandbox."""
    context = context or EvaluatorContext()
    problems = _check_argv("command", options.get("command"), context)
    cascade = options.get("cascade")
    for i, stage in enumerate(cascade if isinstance(cascade, list) else []):
        if isinstance(stage, Mapping):
            problems += _check_argv(f"cascade[{i}].command", stage.get("command"), context)
    code = [name for name, param in (context.space or {}).items() if isinstance(param, Code)]
    if code and options.get("sandbox") is False:
        problems.append(
            f"sandbox: the space has Code parameters ({', '.join(code)}): generated code runs only in the sandbox; "
            'remove sandbox = false (or give limits, e.g. sandbox = { memory = "2GB" })'
        )
    return problems


def _check_argv(key: str, argv: object, context: EvaluatorContext) -> list[str]:
    if argv == []:
        return [f'{key}: must not be empty, e.g. ["{{python}}", "train.py", "--lr", "{{lr}}"]']
    if not isinstance(argv, list) or not all(isinstance(item, str) for item in argv):
        return []  # the schema reports it
    declared = context.parameter_names()
    folder = context.folder or Path.cwd()
    problems = []
    known = [*(declared or ()), *BUILTIN_PLACEHOLDERS]
    for i, item in enumerate(argv):
        try:
            names = placeholders([item])
        except ValueError as exc:
            problems.append(f"{key}[{i}]: not a valid template ({exc}); write {{{{ for a literal {{")
            continue
        for name in names:
            if declared is not None and name not in known:
                problems.append(f"{key}[{i}]: placeholder {{{name}}} is not a parameter (known: {', '.join(known)})")
    program = argv[0]
    if "{" not in program and shutil.which(program) is None and not (folder / program).exists():
        problems.append(f"{key}[0]: program {program!r} not found on PATH or in {folder}")
    return problems


@EVALUATORS.register(
    "command", options=CommandOptions, check=check_command, example='command = ["{python}", "train.py", "{lr}"]'
)
def _command(options: CommandOptions, context: EvaluatorContext | None) -> CommandEvaluator:
    context = context or EvaluatorContext()
    code = {name: param for name, param in (context.space or {}).items() if isinstance(param, Code)}
    sandbox = options.sandbox
    if sandbox is None:
        sandbox = bool(code)  # generated code runs only in the sandbox
    limits = None if sandbox is False else (sandbox.limits() if isinstance(sandbox, SandboxOptions) else Limits())
    return CommandEvaluator(
        options.command,
        timeout=options.timeout,
        cwd=context.folder,
        env=options.env,
        pass_env=options.pass_env,
        metric=context.metric,
        cascade=[Stage(stage.name, stage.command, stage.timeout) for stage in options.cascade],
        sandbox=limits,
        code={name: param.location for name, param in code.items() if param.location is not None},
        candidate=bool(code) and limits is not None,
    )

"""Score a prompt or an LLM pipeline on a labelled dev set, with a task model, within the study's budget.

A candidate here is a pipeline's settings (a system prompt, instructions, a temperature, a retriever's
top-k...). Scoring one means running the pipeline over the dev set's examples and scoring each output
against the expected answer (:mod:`tools.scoring`). Three choices shape how:

* **Every task-model call is the study's.** The pipeline reaches its model through the study's gateway
  (:meth:`agent.study.Study.task_gateway`): each call is recorded with the trial it was made for, priced,
  and held to the same token, money, call and wall-time budget as the optimizer's calls. A budget that runs
  out mid-evaluation fails that trial with the reason, and the run stops.
* **Minibatch first.** Once the study has an incumbent, a candidate is scored on a random minibatch and
  compared with the incumbent's scores on the same examples (read from its stored per-example results, so
  the incumbent is not called again). Only a candidate that beats it there is scored on the rest; the
  others are recorded *pruned*, with their minibatch score as metrics and no value, so a lucky score on 8
  examples never competes with full-set scores.
* **Per-example results are kept** with the trial (artifact ``examples``: input, expected, output, score),
  so ``tunesmith show`` can say which examples flipped, and the proposer can show the model where the
  incumbent fails. A held-out ``test`` split is scored once, after the run, for the initial and the best
  candidate (artifact ``test`` and the user attribute ``test_<metric>``), so users see generalization, not
  dev-set overfitting.

Pipelines: the built-in one fills a prompt template (``{instructions}``: a parameter, ``{input}``: a field
of the example) and asks the task model; or a Python function ``(params, example) -> output``, given the
task model as ``model=`` when it takes such an argument.
"""

from __future__ import annotations

import inspect
import json
import logging
import random
import re
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from agent.errors import ConfigError
from agent.llm.client import LLMClient, LLMError, Message
from agent.llm.gateway import ModelBudgetExhausted
from agent.registry import Options
from agent.space import ParamValue
from agent.trial import Trial, TrialState
from tools.devset import DevSetError, Example, load_examples
from tools.evaluation import Evaluation, tail
from tools.function import resolve_callable
from tools.registry import EVALUATORS, EvaluatorContext
from tools.scoring import BUILTIN_METRICS, Metric, check_examples, resolve_metric

if TYPE_CHECKING:
    from agent.llm.gateway import ModelGateway
    from agent.loop import RunSummary
    from agent.study import Study

log = logging.getLogger(__name__)

#: Purpose of the task model's calls while a candidate is scored on the dev set, and on the test split.
EVALUATE, TEST = "evaluate", "test"
#: Examples scored before a candidate is compared with the incumbent, by default.
MINIBATCH = 8
#: Space parameters the built-in pipeline passes to the task model as call settings, not into the prompt.
CALL_SETTINGS = ("temperature", "max_tokens")

_PLACEHOLDER = re.compile(r"\{(\w+)\}")

#: A pipeline: (parameters, example record, task model) -> the output to score.
Pipeline = Callable[[Mapping[str, ParamValue], Mapping[str, Any], "TaskModel"], Any]


def fill(template: str, values: Mapping[str, Any]) -> str:
    """``template`` with each ``{name}`` of ``values`` replaced; other braces (a JSON example) are left alone."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            return match.group(0)
        item = values[name]
        return item if isinstance(item, str) else json.dumps(item, ensure_ascii=False)

    return _PLACEHOLDER.sub(value, template)


class TaskModel:
    """The task model as a pipeline sees it: a prompt in, the reply's text out.

    Each call goes through the study's gateway, for one trial, and is counted here so the trial can report
    its own calls and tokens.
    """

    def __init__(
        self, gateway: ModelGateway, trial_number: int | None, purpose: str, temperature: float, max_tokens: int
    ) -> None:
        self._gateway = gateway
        self._trial_number = trial_number
        self._purpose = purpose
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.calls = 0
        self.tokens = 0

    @property
    def name(self) -> str:
        return self._gateway.model

    def __call__(
        self,
        prompt: str | Sequence[Message],
        *,
        system: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> str:
        """Ask the task model; ``prompt`` is the user message, or the whole list of messages.

        Raises:
            LLMError: the model gave no reply (after the backend's retries).
            ModelBudgetExhausted: the study's budget (or the run's wall time) cannot cover the call.
        """
        messages: list[Message] = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [*prompt]
        if system is not None:
            messages.insert(0, {"role": "system", "content": system})
        completion = self._gateway.complete(
            messages,
            None,
            purpose=self._purpose,
            temperature=self.temperature if temperature is None else temperature,
            max_tokens=self.max_tokens if max_tokens is None else max_tokens,
            trial_number=self._trial_number,
        )
        self.calls += 1
        self.tokens += completion.prompt_tokens + completion.completion_tokens
        return completion.text.strip()


@dataclass(frozen=True)
class TemplatePipeline:
    """The built-in pipeline: a prompt template filled with the parameters and the example, to the task model.

    Space parameters named ``temperature`` and ``max_tokens`` set the call instead of filling the prompt.
    """

    prompt: str
    system: str | None = None

    def __call__(self, params: Mapping[str, ParamValue], example: Mapping[str, Any], model: TaskModel) -> str:
        values = {**example, **params}
        settings: dict[str, Any] = {name: params[name] for name in CALL_SETTINGS if name in params}
        if "max_tokens" in settings:
            settings["max_tokens"] = int(settings["max_tokens"])
        system = None if self.system is None else fill(self.system, values)
        return model(fill(self.prompt, values), system=system, **settings)

    def placeholders(self) -> set[str]:
        return set(_PLACEHOLDER.findall(self.prompt + (self.system or "")))


def function_pipeline(function: Callable[..., Any]) -> Pipeline:
    """A user's ``(params, example) -> output``, given the task model as ``model=`` if it takes that argument."""
    try:
        takes_model = "model" in inspect.signature(function).parameters
    except (TypeError, ValueError):  # a builtin without a signature: call it plainly
        takes_model = False
    if takes_model:
        return lambda params, example, model: function(params, example, model=model)
    return lambda params, example, model: function(params, example)


@dataclass(frozen=True)
class ExampleResult:
    """One example as scored: what went in, what came out, what was expected, and the score."""

    line: int
    input: Any
    expected: tuple[str, ...]
    output: Any
    score: float

    def to_json(self) -> dict[str, Any]:
        output = self.output if isinstance(self.output, str | int | float | bool | type(None)) else str(self.output)
        return {
            "line": self.line,
            "input": self.input,
            "expected": list(self.expected),
            "output": output,
            "score": self.score,
        }


def read_results(content: bytes | str) -> list[dict[str, Any]]:
    """The per-example results stored as a trial's ``examples`` (or ``test``) artifact: its objects, in order.

    Raises:
        ValueError: the content is not JSON.
    """
    loaded = json.loads(content)
    return [r for r in loaded if isinstance(r, dict)] if isinstance(loaded, list) else []


class _Stopped(Exception):
    """The evaluation cannot go on (the budget ran out, the model or the pipeline failed); its message says why,
    ``feedback`` holds a traceback when there is one."""

    def __init__(self, message: str, feedback: str | None = None) -> None:
        super().__init__(message)
        self.feedback = feedback


@dataclass
class DevSetEvaluator:
    """Scores a pipeline's parameters on a labelled dev set; see the module docstring.

    Args:
        dataset: the dev set, a JSONL file of ``{"input": ..., "expected": ...}`` (other keys allowed).
        metric: ``exact_match``, ``contains``, ``regex``, ``token_f1`` or ``"module:function"``
            (``(output, example) -> float``); it is also the name of the reported score, so the study's
            ``metric`` must be the same.
        pipeline: a callable ``(params, example) -> output`` (or ``"module:function"``), which may take the
            task model as ``model=``; None for the built-in pipeline, which needs ``prompt``.
        prompt: the built-in pipeline's user message, with ``{parameter}`` and ``{example field}``
            placeholders; ``system``: its optional system message.
        task_model: the model the pipeline calls (a spec such as ``"local"`` or a client object); None for
            the study's model.
        test: a held-out split, scored once after each run for the initial and the best candidate.
        minibatch: examples scored before comparing with the incumbent; 0 scores every candidate fully.
        temperature, max_tokens: the task model's call settings (space parameters of those names win).
        folder: where relative paths and modules are looked up.
    """

    dataset: str | Path
    metric: str = "exact_match"
    pipeline: Callable[..., Any] | str | None = None
    prompt: str | None = None
    system: str | None = None
    task_model: str | LLMClient | None = None
    test: str | Path | None = None
    minibatch: int = MINIBATCH
    temperature: float = 0.0
    max_tokens: int = 64
    folder: Path | None = None
    examples: list[Example] = field(init=False)
    test_examples: list[Example] = field(init=False)
    _pipeline: Pipeline = field(init=False)
    _score: Metric = field(init=False)
    _study: Study | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ConfigError("; ".join(problems))
        self.examples = load_examples(self.path(self.dataset))
        self.test_examples = [] if self.test is None else load_examples(self.path(self.test))
        self._score = resolve_metric(self.metric, self.folder)
        if self.pipeline is None:
            assert self.prompt is not None
            self._pipeline = TemplatePipeline(self.prompt, self.system)
        else:
            function = resolve_callable(self.pipeline, self.folder) if isinstance(self.pipeline, str) else self.pipeline
            self._pipeline = function_pipeline(function)

    def path(self, name: str | Path) -> Path:
        """A data file as the evaluator reads it: relative paths are taken from its folder (the job file's)."""
        path = Path(name).expanduser()
        return path if path.is_absolute() or self.folder is None else self.folder / path

    def __reduce__(self) -> Any:
        raise TypeError(
            "a dev-set objective calls its task model through this process's study: run it with workers in "
            'threads (executor="threads"), not processes'
        )

    # Lifecycle ------------------------------------------------------------------------------------------
    def start_run(self, study: Study) -> None:
        if study.metric != self.metric:
            raise ConfigError(
                f"this dev-set objective reports {self.metric!r}; create the study with metric={self.metric!r} "
                f"(it has {study.metric!r})"
            )
        if study.direction != "maximize" and self.metric in BUILTIN_METRICS:
            raise ConfigError(f'{self.metric} is higher for better outputs: create the study with direction="maximize"')
        self._study = study
        study.task_gateway(self.task_model)  # starts the model now, not inside the first trial's clock

    def end_run(self, study: Study, summary: RunSummary) -> None:
        if self.test is not None:
            score_test_split(study, self)

    # Evaluation ---------------------------------------------------------------------------------------
    def evaluate(self, params: Mapping[str, ParamValue], trial: Trial) -> Evaluation:
        if self._study is None:
            raise ConfigError("a dev-set objective runs inside study.optimize(), which gives it the study's model")
        model = self.task(self._study, trial.number, EVALUATE, params)
        incumbent = self._incumbent_scores(self._study)
        results: list[ExampleResult] = []
        try:
            if incumbent is not None and 0 < self.minibatch < len(self.examples):
                batch_lines = self._minibatch(trial.number, incumbent)
                batch = [e for e in self.examples if e.line in batch_lines]
                results = self.run(params, batch, model)
                mine = _mean(r.score for r in results)
                theirs = _mean(incumbent[line] for line in batch_lines)
                if mine <= theirs:
                    return self._pruned(results, model, mine, theirs)
            done = {r.line for r in results}
            results += self.run(params, [e for e in self.examples if e.line not in done], model)
        except _Stopped as stop:
            return Evaluation(None, error=str(stop), feedback=stop.feedback, artifacts=_artifact("examples", results))
        results.sort(key=lambda r: r.line)
        score = _mean(r.score for r in results)
        metrics = {self.metric: score, "examples": len(results), "task_calls": model.calls, "task_tokens": model.tokens}
        return Evaluation(metrics, feedback=_misses(results), artifacts=_artifact("examples", results))

    def task(self, study: Study, trial_number: int | None, purpose: str, params: Mapping[str, ParamValue]) -> TaskModel:
        return TaskModel(study.task_gateway(self.task_model), trial_number, purpose, self.temperature, self.max_tokens)

    def run(
        self, params: Mapping[str, ParamValue], examples: Sequence[Example], model: TaskModel
    ) -> list[ExampleResult]:
        """Run the pipeline on each example and score it.

        Raises:
            _Stopped: the budget ran out or the task model failed; the message says after how many examples.
        """
        results: list[ExampleResult] = []
        for example in examples:
            try:
                output = self._pipeline(params, example.record, model)
                score = self._score(output, example)
            except ModelBudgetExhausted as exc:
                raise _Stopped(_cut_short(exc.reason, results, examples)) from exc
            except LLMError as exc:
                raise _Stopped(f"the task model failed on line {example.line}: {exc}") from exc
            except Exception as exc:  # the user's pipeline or metric: this candidate fails, the study goes on
                where = f"{Path(str(self.dataset)).name} line {example.line}"
                raise _Stopped(f"{type(exc).__name__}: {exc} ({where})", tail(traceback.format_exc())) from exc
            results.append(ExampleResult(example.line, example.input, example.expected, output, score))
        return results

    def _pruned(self, results: list[ExampleResult], model: TaskModel, mine: float, theirs: float) -> Evaluation:
        metrics = {"minibatch_score": mine, "incumbent_minibatch_score": theirs, "examples": len(results)}
        metrics |= {"task_calls": model.calls, "task_tokens": model.tokens}
        why = f"{mine:.4g} on a minibatch of {len(results)}, the best has {theirs:.4g} there: not scored further\n"
        return Evaluation(
            metrics, feedback=why + _misses(results), pruned=True, artifacts=_artifact("examples", results)
        )

    def _incumbent_scores(self, study: Study) -> dict[int, float] | None:
        """The best complete trial's score on each dev line, or None (no incumbent, or one scored on another
        version of the dev set)."""
        try:
            best = study.best_trial
            stored = read_results(study.artifact(best, "examples"))
        except (ValueError, KeyError):
            return None
        scores = {int(r["line"]): float(r["score"]) for r in stored if "line" in r and "score" in r}
        return scores if all(e.line in scores for e in self.examples) else None

    def _minibatch(self, trial_number: int, incumbent: Mapping[int, float]) -> list[int]:
        """A random minibatch, drawn afresh for each trial (reproducibly: by its number and the seed)."""
        seed = self._study.seed if self._study is not None else None
        rng = random.Random(f"{seed}:{trial_number}")
        return sorted(rng.sample([e.line for e in self.examples], self.minibatch))


def score_test_split(study: Study, evaluator: DevSetEvaluator) -> dict[int, float]:
    """Score the held-out split once for the initial candidate and the best one; returns score by trial.

    The initial candidate is the first complete trial with the space's default texts (the prompt as the user
    wrote it), else the first complete trial. A trial scored before keeps its score: the split is looked at
    once per candidate, so it stays a test of generalization. Its calls are recorded (purpose ``test``) and
    not limited by the budget: the run is over, and the split's size is known.
    """
    complete = [t for t in study.trials if t.state is TrialState.COMPLETE and t.value is not None]
    if not complete:
        return {}
    defaults = study.space.defaults()
    initial = next((t for t in complete if all(t.params.get(k) == v for k, v in defaults.items())), complete[0])
    best = study.best_trial
    which = {initial.number: "initial", best.number: "best"}
    scores: dict[int, float] = {}
    for trial in [initial] if best.number == initial.number else [initial, best]:
        score = held_out_score(study, evaluator, trial)
        if score is not None:
            scores[trial.number] = score
    log.info(
        "test split (%s): %s",
        evaluator.metric,
        ", ".join(f"{which[n]} trial {n}: {s:.4g}" for n, s in scores.items()),
    )
    return scores


def held_out_score(study: Study, evaluator: DevSetEvaluator, trial: Trial) -> float | None:
    """``trial``'s score on the held-out split: stored with it (artifact ``test``, user attribute
    ``test_<metric>``) the first time, read back after; None when the task model could not finish it."""
    assert evaluator.test is not None
    key = f"test_{evaluator.metric}"
    if key in trial.user_attrs:
        return float(trial.user_attrs[key])
    model = evaluator.task(study, trial.number, TEST, trial.params)
    try:
        results = evaluator.run(trial.params, evaluator.test_examples, model)
    except _Stopped as stop:
        log.warning("the test split was not scored for trial %d: %s", trial.number, stop)
        return None
    score = _mean(r.score for r in results)
    study.add_artifact(trial, "test", json.dumps([r.to_json() for r in results], ensure_ascii=False))
    study.set_user_attr(trial, key, score)
    return score


# Helpers ------------------------------------------------------------------------------------------------
def _mean(scores: Any) -> float:
    values = list(scores)
    return sum(values) / len(values) if values else 0.0


def _artifact(name: str, results: Sequence[ExampleResult]) -> dict[str, str]:
    if not results:
        return {}
    return {name: json.dumps([r.to_json() for r in sorted(results, key=lambda r: r.line)], ensure_ascii=False)}


def _misses(results: Sequence[ExampleResult], shown: int = 5) -> str:
    """The first few examples scored below 1, for the trial's feedback."""
    missed = [r for r in results if r.score < 1.0]
    lines = [f"{len(missed)} of {len(results)} examples missed"]
    for r in missed[:shown]:
        got = r.output if isinstance(r.output, str) else json.dumps(r.output, default=str)
        lines.append(f"line {r.line}: expected {r.expected[0]!r}, got {tail(str(got), 120)!r}")
    return "\n".join(lines)


def _cut_short(reason: str, results: Sequence[ExampleResult], examples: Sequence[Example]) -> str:
    return (
        f"the {reason} ran out after {len(results)} of {len(examples)} examples: this candidate was not fully "
        "scored (raise the budget and run again)"
    )


def _problems(evaluator: DevSetEvaluator) -> list[str]:
    """What is wrong with an evaluator's settings, before anything is read."""
    problems = []
    if evaluator.pipeline is None and evaluator.prompt is None:
        problems.append('set prompt = "... {input} ..." (the built-in pipeline) or pipeline = "module:function"')
    if evaluator.pipeline is not None and (evaluator.prompt is not None or evaluator.system is not None):
        problems.append("prompt and system belong to the built-in pipeline; a pipeline function writes its own")
    if evaluator.minibatch < 0:
        problems.append(f"minibatch must be 0 (no minibatch) or more, got {evaluator.minibatch}")
    return problems


# The job-file objective --------------------------------------------------------------------------------
class DatasetOptions(Options):
    """The ``dataset`` objective: ``dataset = "dev.jsonl"`` with a pipeline (the built-in ``prompt``, or
    ``pipeline = "module:function"``); the score is ``[objective] metric``."""

    dataset: str = Field(description="the dev set: JSONL, one {input, expected} object per line")
    prompt: str | None = Field(default=None, description="the built-in pipeline's user message template")
    system: str | None = Field(default=None, description="the built-in pipeline's system message template")
    pipeline: str | None = Field(default=None, description='"module:function" (params, example[, model]) -> output')
    task_model: str | None = Field(default=None, description="the model the pipeline calls; default: the study's")
    test: str | None = Field(default=None, description="a held-out split scored once for the initial and best")
    minibatch: int = Field(default=MINIBATCH, ge=0, description="examples scored before comparing (0: all)")
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="the task model's temperature")
    max_tokens: int = Field(default=64, ge=1, description="the task model's longest reply")


def check_dataset(options: Mapping[str, Any], context: EvaluatorContext | None) -> list[str]:
    """Everything that can be known before a model starts: the files, the metric, the placeholders, the model."""
    from agent.llm.spec import model_problems

    context = context or EvaluatorContext()
    problems: list[str] = []
    metric = context.metric
    if metric is None:
        problems.append(
            f'metric: a dataset objective needs metric = one of {", ".join(BUILTIN_METRICS)} or "module:function"'
        )
    elif metric in BUILTIN_METRICS and context.direction not in (None, "maximize"):
        problems.append(f'metric: {metric} is higher for better outputs; set direction = "maximize" in [study]')
    names = set(context.parameter_names() or ())
    splits: dict[str, str] = {key: options[key] for key in ("dataset", "test") if isinstance(options.get(key), str)}
    for key, name in splits.items():
        path = Path(name).expanduser()
        path = path if path.is_absolute() or context.folder is None else context.folder / path
        try:
            examples = load_examples(path)
        except DevSetError as exc:
            problems += [f"{key}: {problem}" for problem in exc.problems]
            continue
        if metric is not None and metric in BUILTIN_METRICS:
            problems += [f"{key}: {problem}" for problem in check_examples(examples, metric, source=path.name)]
        template = TemplatePipeline(str(options.get("prompt") or ""), options.get("system"))
        if options.get("pipeline") is None and context.parameter_names() is not None:
            for placeholder in sorted(template.placeholders() - names):
                lacking = next((e.line for e in examples if placeholder not in e.record), None)
                if lacking is not None:
                    problems.append(
                        f"prompt: {{{placeholder}}} is neither a parameter ({', '.join(sorted(names))}) nor a field of "
                        f"{path.name} line {lacking}"
                    )
                    break
    if metric is not None and metric not in BUILTIN_METRICS:
        try:
            resolve_metric(metric, context.folder)
        except ValueError as exc:
            problems.append(f"metric: {exc}")
    if isinstance(options.get("pipeline"), str):
        try:
            resolve_callable(options["pipeline"], context.folder)
        except ValueError as exc:
            problems.append(f"pipeline: {exc}")
    task_model = options.get("task_model") or context.model
    if task_model is None:
        problems.append('task_model: the study has no model; name one, e.g. task_model = "local"')
    elif isinstance(task_model, str):
        try:
            problems += [f"task_model: {problem}" for problem in model_problems(task_model)]
        except ValueError as exc:
            problems.append(f"task_model: {exc}")
    return problems


@EVALUATORS.register("dataset", options=DatasetOptions, check=check_dataset, example='dataset = "dev.jsonl"')
def _dataset(options: DatasetOptions, context: EvaluatorContext | None) -> DevSetEvaluator:
    context = context or EvaluatorContext()
    try:
        return DevSetEvaluator(
            options.dataset,
            metric=context.metric or "exact_match",
            pipeline=options.pipeline,
            prompt=options.prompt,
            system=options.system,
            task_model=options.task_model,
            test=options.test,
            minibatch=options.minibatch,
            temperature=options.temperature,
            max_tokens=options.max_tokens,
            folder=context.folder,
        )
    except DevSetError as exc:
        raise ConfigError("; ".join(exc.problems), field="objective.dataset") from exc


__all__ = [
    "EVALUATE",
    "TEST",
    "DatasetOptions",
    "DevSetEvaluator",
    "ExampleResult",
    "TaskModel",
    "TemplatePipeline",
    "fill",
    "held_out_score",
    "read_results",
    "score_test_split",
]

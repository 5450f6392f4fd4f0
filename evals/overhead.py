"""Loop overhead benchmark: what tunesmith itself costs per trial, apart from the objective.

    python -m evals.overhead                                  # full sizes: marks 100, 1000, 5000
    python -m evals.overhead --trials 1000 --out o.md --json o.json
    cd /other/tree && PYTHONPATH=/other/tree python /work/main/evals/overhead.py   # measure another checkout

Three measurements, all through the public API (``create_study``, ``ask``, ``tell``, ``optimize``,
``Budget``), so that the same file measures any checkout, before and after a rewrite:

1. *ask + tell overhead*: a study on a SQLite file is grown by ask/tell with the ``random`` proposer and
   a trivial objective; the mean time per trial over a window of trials ending at each mark shows whether
   the per-trial cost stays flat as the study grows. Optuna's RDB storage on SQLite (``RandomSampler``)
   is measured the same way in the same run, as the yardstick a user would compare with.
2. *throughput*: ``optimize`` with 1, 2 and 4 workers and an objective that sleeps, against the ideal
   ``workers / sleep`` trials per second: it shows what the coordinator loses between trials.
3. *bo suggestion time*: mean seconds per ``ask`` of the ``bo`` proposer at a few study sizes on
   4-6-dimensional synthetic problems, to check a rewrite of the loop did not make proposals slower.

Run as a file, the harness measures whichever ``agent`` comes first on ``sys.path``; the report names that
tree and its commit, so a baseline cannot be mistaken for the working copy.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.logs import set_verbosity
from evals.report import report_arguments

if TYPE_CHECKING:
    from evals.problems import Problem

#: Targets from the issue: the overhead at the last mark, its growth from the first mark, workers' efficiency.
TARGET_MS_PER_TRIAL = 10.0
TARGET_GROWTH = 1.5
TARGET_EFFICIENCY = 0.9

SECTIONS = ("overhead", "throughput", "bo")
DEFAULT_MARKS = (100, 1000, 5000)
DEFAULT_BO_PROBLEMS = ("rosenbrock4", "hartmann6")
FLOATS = ("x0", "x1", "x2", "x3")
CHOICES = ("a", "b", "c")


def _csv_ints(text: str) -> list[int]:
    return [int(item) for item in text.split(",") if item.strip()]


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m evals.overhead",
        description="What tunesmith itself costs per trial: ask+tell overhead, optimize throughput, bo ask time.",
    )
    parser.add_argument("--trials", type=int, default=max(DEFAULT_MARKS), help="study size to grow to (default 5000)")
    parser.add_argument(
        "--marks", help="comma list of trial counts to report (default: those of 100,1000,5000 up to --trials)"
    )
    parser.add_argument("--window", type=int, default=50, help="trials averaged, ending at each mark (default 50)")
    parser.add_argument("--no-optuna", action="store_true", help="skip Optuna's RDB storage in the overhead section")
    parser.add_argument("--workers", default="1,2,4", help="worker counts for the throughput section (default 1,2,4)")
    parser.add_argument("--sleep", type=float, default=0.2, help="seconds each throughput trial sleeps (default 0.2)")
    parser.add_argument("--per-worker", type=int, default=20, help="throughput trials per worker (default 20)")
    parser.add_argument("--bo-marks", default="10,20,30,40", help="study sizes for bo timings (default 10,20,30,40)")
    parser.add_argument("--bo-problems", default=",".join(DEFAULT_BO_PROBLEMS), help="synthetic problems for bo")
    parser.add_argument("--bo-seeds", type=int, default=2, help="bo runs per problem, seeds 0..N-1 (default 2)")
    parser.add_argument(
        "--torch-threads", type=int, default=1, help="torch threads for bo (default 1, as evals.run's workers)"
    )
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma list of sections ({', '.join(SECTIONS)})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random proposer and sampler (default 0)")
    report_arguments(parser, "the SQLite files")
    args = parser.parse_args(argv)
    args.only = _csv(args.only)
    unknown = [s for s in args.only if s not in SECTIONS]
    if unknown or not args.only:
        parser.error(f"--only takes a comma list of {', '.join(SECTIONS)}")
    if args.trials < 1 or args.window < 1 or args.per_worker < 1 or args.bo_seeds < 1 or not args.sleep > 0:
        parser.error("--trials, --window, --per-worker, --bo-seeds and --sleep must be positive")
    marks = _csv_ints(args.marks) if args.marks else [m for m in DEFAULT_MARKS if m <= args.trials] or [args.trials]
    if any(not 1 <= m <= args.trials for m in marks):
        parser.error(f"--marks must lie in 1..{args.trials}")
    args.marks = sorted(set(marks))
    args.workers = sorted(set(_csv_ints(args.workers)))
    args.bo_marks = sorted(set(_csv_ints(args.bo_marks)))
    args.bo_problems = _csv(args.bo_problems)
    if not args.workers or min(args.workers) < 1 or not args.bo_marks or min(args.bo_marks) < 1:
        parser.error("--workers and --bo-marks take positive integers")
    return args


# Shared pieces ---------------------------------------------------------------------------------------------


def _space() -> Any:
    """Four floats, an integer and a categorical: a typical small space, so encoding costs are realistic."""
    from agent import Categorical, Float, Int, Space

    return Space(**{name: Float(-5.0, 5.0) for name in FLOATS}, n=Int(1, 100), c=Categorical(list(CHOICES)))


def _trivial(params: Mapping[str, Any]) -> float:
    """Microseconds of work, so that what is measured is the loop's own cost."""
    return sum(float(params[name]) ** 2 for name in FLOATS) + float(params["n"]) + CHOICES.index(params["c"])


def _close(study: Any) -> None:
    close = getattr(study, "close", None)
    if callable(close):
        close()


def _window_stats(ask_s: Sequence[float], tell_s: Sequence[float], marks: Sequence[int], window: int) -> list[dict]:
    """Per mark: mean and median ms per trial (ask + tell) over the ``window`` trials ending at that mark."""
    rows = []
    for mark in marks:
        width = min(window, mark)
        asks, tells = ask_s[mark - width : mark], tell_s[mark - width : mark]
        totals = [a + t for a, t in zip(asks, tells, strict=True)]
        rows.append(
            {
                "mark": mark,
                "window": [mark - width + 1, mark],
                "mean_ms": 1e3 * statistics.fmean(totals),
                "median_ms": 1e3 * statistics.median(totals),
                "ask_mean_ms": 1e3 * statistics.fmean(asks),
                "tell_mean_ms": 1e3 * statistics.fmean(tells),
            }
        )
    return rows


def _grow(ask: Callable[[], Any], tell: Callable[[Any], object], trials: int) -> tuple[list[float], list[float]]:
    """Run ``trials`` ask/tell steps; the seconds of each ask and each tell."""
    ask_s, tell_s = [], []
    clock = time.perf_counter
    for _ in range(trials):
        t0 = clock()
        handle = ask()
        t1 = clock()
        tell(handle)
        t2 = clock()
        ask_s.append(t1 - t0)
        tell_s.append(t2 - t1)
    return ask_s, tell_s


# 1. ask + tell overhead ------------------------------------------------------------------------------------


def tunesmith_overhead(folder: Path, marks: Sequence[int], window: int, seed: int) -> dict[str, Any]:
    """Grow a ``random`` study on a SQLite file to the last mark by ask/tell, timing every step."""
    from agent import create_study

    study = create_study(
        name="overhead",
        space=_space(),
        direction="minimize",
        storage=f"sqlite:///{folder / 'tunesmith-overhead.db'}",
        proposer="random",
        seed=seed,
    )
    try:
        started = time.perf_counter()
        ask_s, tell_s = _grow(study.ask, lambda trial: study.tell(trial, _trivial(trial.params)), max(marks))
        total = time.perf_counter() - started
    finally:
        _close(study)
    return {"total_s": total, "per_mark": _window_stats(ask_s, tell_s, marks, window)}


def optuna_overhead(folder: Path, marks: Sequence[int], window: int, seed: int) -> dict[str, Any]:
    """The same with Optuna: RDBStorage on SQLite, RandomSampler; the suggest calls count as the ask."""
    import optuna

    optuna.logging.set_verbosity(logging.WARNING)
    storage = optuna.storages.RDBStorage(f"sqlite:///{folder / 'optuna-overhead.db'}")
    study = optuna.create_study(
        study_name="overhead", storage=storage, sampler=optuna.samplers.RandomSampler(seed=seed), direction="minimize"
    )

    def ask() -> Any:
        trial = study.ask()
        for name in FLOATS:
            trial.suggest_float(name, -5.0, 5.0)
        trial.suggest_int("n", 1, 100)
        trial.suggest_categorical("c", list(CHOICES))
        return trial

    started = time.perf_counter()
    ask_s, tell_s = _grow(ask, lambda trial: study.tell(trial, _trivial(trial.params)), max(marks))
    total = time.perf_counter() - started
    storage.remove_session()
    storage.engine.dispose()
    return {"version": optuna.__version__, "total_s": total, "per_mark": _window_stats(ask_s, tell_s, marks, window)}


# 2. Throughput of optimize ---------------------------------------------------------------------------------


def throughput(folder: Path, workers: Sequence[int], sleep: float, per_worker: int, seed: int) -> list[dict]:
    """Trials per second of ``optimize`` with a sleeping objective, against the ideal ``n / sleep``."""
    from agent import Budget, create_study

    def sleeper(params: Mapping[str, Any]) -> float:
        time.sleep(sleep)
        return _trivial(params)

    rows = []
    for n in workers:
        study = create_study(
            name=f"throughput-{n}",
            space=_space(),
            direction="minimize",
            storage=f"sqlite:///{folder / f'tunesmith-throughput-{n}.db'}",
            proposer="random",
            seed=seed,
        )
        trials = per_worker * n
        # A wall-time budget well beyond the ideal run: a hang ends the run instead of the benchmark.
        safety = Budget(wall_time=max(60.0, 20 * trials * sleep / n))
        try:
            started = time.perf_counter()
            study.optimize(sleeper, n_trials=trials, budget=safety, workers=n)
            wall = time.perf_counter() - started
            finished = study.trials
        finally:
            _close(study)
        complete = sum(str(getattr(t.state, "value", t.state)) == "complete" for t in finished)
        rate = complete / wall
        ideal = n / sleep
        rows.append(
            {
                "workers": n,
                "trials": trials,
                "complete": complete,
                "wall_s": wall,
                "trials_per_s": rate,
                "ideal_per_s": ideal,
                "efficiency": rate / ideal,
                "overhead_ms_per_trial": 1e3 * (wall - trials * sleep / n) / trials,
            }
        )
    return rows


# 3. bo suggestion time -------------------------------------------------------------------------------------


def bo_timings(folder: Path, problems: Sequence[str], marks: Sequence[int], seeds: int, threads: int) -> list[dict]:
    """Seconds per ``ask`` of the ``bo`` proposer over the trials between consecutive marks."""
    from evals.problems.synthetic import PROBLEMS

    by_name = {p.name: p for p in PROBLEMS}
    unknown = [name for name in problems if name not in by_name]
    if unknown:
        raise ValueError(f"unknown synthetic problem(s) {', '.join(unknown)}; choose from {', '.join(by_name)}")
    # Imported before timing, so that the first proposal does not pay for loading torch and botorch.
    import botorch  # noqa: F401
    import torch

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _bo_runs(folder, [by_name[name] for name in problems], marks, seeds)
    finally:  # a caller in the same process (a test session) keeps its own thread count
        torch.set_num_threads(previous_threads)


def _bo_runs(folder: Path, problems: Sequence[Problem], marks: Sequence[int], seeds: int) -> list[dict]:
    from agent import create_study

    rows = []
    for problem in problems:
        name = problem.name
        for seed in range(seeds):
            study = create_study(
                name=f"bo-{name}-{seed}",
                space=problem.space,
                direction="minimize",
                storage=f"sqlite:///{folder / f'tunesmith-bo-{name}-{seed}.db'}",
                proposer="bo",
                seed=seed,
            )
            try:
                ask_s, _ = _grow(study.ask, _teller(study, problem.objective), max(marks))
            finally:
                _close(study)
            windows, start = [], 0
            for mark in marks:
                chunk = ask_s[start:mark]
                windows.append(
                    {
                        "trials": [start + 1, mark],
                        "mean_s": statistics.fmean(chunk),
                        "median_s": statistics.median(chunk),
                    }
                )
                start = mark
            rows.append({"problem": name, "dims": problem.dims, "seed": seed, "windows": windows})
    return rows


def _teller(study: Any, objective: Callable[[Mapping[str, Any]], float]) -> Callable[[Any], object]:
    return lambda trial: study.tell(trial, objective(trial.params))


def bo_summary(runs: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Mean over seeds of each window's mean seconds per ask, per problem."""
    out = []
    for name in dict.fromkeys(r["problem"] for r in runs):
        mine = [r for r in runs if r["problem"] == name]
        windows = []
        for i, window in enumerate(mine[0]["windows"]):
            means = [r["windows"][i]["mean_s"] for r in mine]
            medians = [r["windows"][i]["median_s"] for r in mine]
            windows.append(
                {"trials": window["trials"], "mean_s": statistics.fmean(means), "median_s": statistics.median(medians)}
            )
        out.append({"problem": name, "dims": mine[0]["dims"], "seeds": len(mine), "windows": windows})
    return out


# Report ----------------------------------------------------------------------------------------------------


def _git(folder: Path) -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=folder, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "."], cwd=folder, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _nproc() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def metadata(argv: Sequence[str]) -> dict[str, Any]:
    """What a timing means nothing without: the command, date, machine, and which tunesmith was measured."""
    import sqlite3

    import agent

    tree = Path(agent.__file__).resolve().parent.parent
    return {
        "command": shlex.join(["python", "-m", "evals.overhead", *argv]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "nproc": _nproc(),
            "cpu": _cpu_model(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
        },
        "tunesmith": {"tree": str(tree), "git": _git(tree), "version": getattr(agent, "__version__", None)},
        "load_average": {"start": list(os.getloadavg())},
    }


def run_header(title: str, meta: Mapping[str, Any]) -> list[str]:
    """The first lines of a report: the command, date, machine, tree measured and load (from :func:`metadata`)."""
    machine, tree, load = meta["machine"], meta["tunesmith"], meta["load_average"]
    return [
        f"# {title}",
        "",
        f"- command: `{meta['command']}`",
        f"- date: {meta['date']}",
        f"- machine: nproc {machine['nproc']}, {machine['cpu']}, {machine['platform']}, Python {machine['python']}, "
        f"SQLite {machine['sqlite']}",
        f"- tunesmith measured: `{tree['tree']}` (git {tree['git'] or 'unknown'})",
        "- load average (1, 5, 15 min): start "
        + ", ".join(f"{x:.2f}" for x in load["start"])
        + (", end " + ", ".join(f"{x:.2f}" for x in load["end"]) if "end" in load else ""),
    ]


def targets(results: Mapping[str, Any]) -> dict[str, Any]:
    """The issue's targets, checked against this run (None where the section did not run)."""
    out: dict[str, Any] = {}
    overhead = results.get("overhead")
    if overhead:
        rows = overhead["tunesmith"]["per_mark"]
        last, first = rows[-1], rows[0]
        out["ms_per_trial_at_last_mark"] = {
            "mark": last["mark"],
            "value": last["mean_ms"],
            "target": TARGET_MS_PER_TRIAL,
            "met": last["mean_ms"] <= TARGET_MS_PER_TRIAL,
        }
        growth = last["mean_ms"] / first["mean_ms"]
        out["growth_last_over_first"] = {
            "marks": [first["mark"], last["mark"]],
            "value": growth,
            "target": TARGET_GROWTH,
            "met": growth <= TARGET_GROWTH,
        }
    if results.get("throughput"):
        worst = min(results["throughput"], key=lambda r: r["efficiency"])
        out["throughput_efficiency"] = {
            "worst_workers": worst["workers"],
            "value": worst["efficiency"],
            "target": TARGET_EFFICIENCY,
            "met": all(r["efficiency"] >= TARGET_EFFICIENCY for r in results["throughput"]),
        }
    return out


def _met(flag: bool) -> str:
    return "yes" if flag else "**no**"


def render(results: Mapping[str, Any]) -> str:
    lines = run_header("tunesmith loop overhead", results["meta"])
    goals = results.get("targets", {})
    overhead = results.get("overhead")
    if overhead:
        ts = overhead["tunesmith"]["per_mark"]
        op = overhead.get("optuna")
        lines += [
            "",
            "## ask + tell per trial",
            "",
            f"`random` proposer, trivial objective, a SQLite file; the study grown by ask/tell to each mark. "
            f"Milliseconds per trial (ask + tell), over the {overhead['window']} trials ending at the mark"
            + (f"; Optuna {op['version']} RDBStorage on SQLite with RandomSampler, the same way." if op else "."),
            "",
        ]
        header = "| trials | tunesmith mean ms | median | ask | tell |"
        rule = "|---:|---:|---:|---:|---:|"
        if op:
            header += " Optuna mean ms | median | ask | tell | tunesmith / Optuna |"
            rule += "---:|---:|---:|---:|---:|"
        lines += [header, rule]
        for i, row in enumerate(ts):
            cells = [
                f"{row['mark']:,}",
                f"{row['mean_ms']:.2f}",
                f"{row['median_ms']:.2f}",
                f"{row['ask_mean_ms']:.2f}",
                f"{row['tell_mean_ms']:.2f}",
            ]
            if op:
                o = op["per_mark"][i]
                cells += [
                    f"{o['mean_ms']:.2f}",
                    f"{o['median_ms']:.2f}",
                    f"{o['ask_mean_ms']:.2f}",
                    f"{o['tell_mean_ms']:.2f}",
                    f"{row['mean_ms'] / o['mean_ms']:.2f}x",
                ]
            lines.append("| " + " | ".join(cells) + " |")
        totals = f"Growing the study to {ts[-1]['mark']:,} trials took {overhead['tunesmith']['total_s']:.1f} s"
        totals += f" (Optuna: {op['total_s']:.1f} s)." if op else "."
        lines += ["", totals]
        if op:
            growth = op["per_mark"][-1]["mean_ms"] / op["per_mark"][0]["mean_ms"]
            lines.append(f"Optuna's own growth from trial {ts[0]['mark']:,} to {ts[-1]['mark']:,}: {growth:.2f}x.")
        at_last, growth_t = goals["ms_per_trial_at_last_mark"], goals["growth_last_over_first"]
        lines += [
            "",
            "| target | measured | met? |",
            "|---|---|---|",
            f"| ≤ {at_last['target']:g} ms per trial at trial {at_last['mark']:,} | {at_last['value']:.2f} ms "
            f"| {_met(at_last['met'])} |",
            f"| trial {growth_t['marks'][1]:,} ≤ {growth_t['target']:g}x trial {growth_t['marks'][0]:,} "
            f"| {growth_t['value']:.2f}x | {_met(growth_t['met'])} |",
        ]
    if results.get("throughput"):
        rows = results["throughput"]
        lines += [
            "",
            "## optimize throughput",
            "",
            f"`random` proposer, an objective that sleeps {results['throughput_sleep']:g} s, "
            f"{rows[0]['trials'] // rows[0]['workers']} trials per worker; efficiency = trials/s over the ideal "
            f"workers / {results['throughput_sleep']:g} s (target ≥ {TARGET_EFFICIENCY:g}).",
            "",
            "| workers | trials | complete | wall s | trials/s | ideal | efficiency | overhead ms/trial | met? |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in rows:
            lines.append(
                f"| {r['workers']} | {r['trials']} | {r['complete']} | {r['wall_s']:.2f} | {r['trials_per_s']:.2f} "
                f"| {r['ideal_per_s']:.2f} | {r['efficiency']:.3f} | {r['overhead_ms_per_trial']:.1f} "
                f"| {_met(r['efficiency'] >= TARGET_EFFICIENCY)} |"
            )
    if results.get("bo"):
        summary = results["bo"]["summary"]
        windows = [w["trials"] for w in summary[0]["windows"]]
        lines += [
            "",
            "## bo suggestion time",
            "",
            f"Seconds per `ask` of the `bo` proposer (mean over the trials in each range, then over "
            f"{summary[0]['seeds']} seed(s); median in brackets), SQLite file, torch threads "
            f"{results['bo']['torch_threads']}.",
            "",
            "| problem | dims | " + " | ".join(f"trials {a}-{b}" for a, b in windows) + " |",
            "|---|---:|" + "---:|" * len(windows),
        ]
        for s in summary:
            cells = [f"{w['mean_s']:.3f} ({w['median_s']:.3f})" for w in s["windows"]]
            lines.append(f"| {s['problem']} | {s['dims']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _json_ready(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    return value


def run(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    """Every selected section, in order, in one folder of SQLite files."""
    results: dict[str, Any] = {"meta": metadata(argv)}
    with tempfile.TemporaryDirectory(prefix="tunesmith-overhead-") as scratch:
        folder = Path(args.dir) if args.dir else Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        if "overhead" in args.only:
            print(f"ask + tell: growing a tunesmith study to {max(args.marks):,} trials", file=sys.stderr, flush=True)
            overhead: dict[str, Any] = {
                "marks": args.marks,
                "window": args.window,
                "tunesmith": tunesmith_overhead(folder, args.marks, args.window, args.seed),
            }
            if not args.no_optuna:
                print(f"ask + tell: growing an Optuna study to {max(args.marks):,}", file=sys.stderr, flush=True)
                overhead["optuna"] = optuna_overhead(folder, args.marks, args.window, args.seed)
            results["overhead"] = overhead
        if "throughput" in args.only:
            print(f"throughput: workers {args.workers}", file=sys.stderr, flush=True)
            results["throughput_sleep"] = args.sleep
            results["throughput"] = throughput(folder, args.workers, args.sleep, args.per_worker, args.seed)
        if "bo" in args.only:
            print(f"bo: {', '.join(args.bo_problems)} to {max(args.bo_marks)} trials", file=sys.stderr, flush=True)
            runs = bo_timings(folder, args.bo_problems, args.bo_marks, args.bo_seeds, args.torch_threads)
            results["bo"] = {"torch_threads": args.torch_threads, "summary": bo_summary(runs), "runs": runs}
    results["meta"]["load_average"]["end"] = list(os.getloadavg())
    results["targets"] = targets(results)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    set_verbosity(logging.WARNING)  # a line per trial would be part of what is measured
    results = json.loads(Path(args.summarize).read_text()) if args.summarize else _json_ready(run(args, argv))
    markdown = render(results)
    print(markdown)
    if args.out:
        Path(args.out).write_text(markdown)
    if args.json and not args.summarize:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    # Run as a file, this folder (evals/) is sys.path[0]; drop it so that its modules shadow nothing, and make
    # sure the checkout it sits in is importable when no other one was put first (PYTHONPATH).
    _here = Path(__file__).resolve().parent
    if sys.path and sys.path[0] and Path(sys.path[0]).resolve() == _here:
        sys.path.pop(0)
    sys.path.append(str(_here.parent))
    sys.exit(main())

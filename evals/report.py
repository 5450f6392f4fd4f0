"""The markdown report, and the facts about the machine and software that a timing means nothing without."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from evals.optimizers import BASELINE, label

# greenlet is listed because Optuna's GPSampler falls back to a slower sequential optimizer without it.
_PACKAGES = ("torch", "botorch", "optuna", "greenlet", "scikit-learn", "numpy", "scipy")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_revision() -> str | None:
    """The commit the harness ran from, with "+dirty" when the working tree had changes."""
    try:
        root = Path(__file__).resolve().parent.parent
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def machine_info() -> dict[str, Any]:
    """Platform, CPU, Python and the versions of the libraries the compared methods run on."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "packages": versions,
        "git": _git_revision(),
    }


def _score(cell: Mapping[str, float | None]) -> str:
    if cell["mean"] is None:
        return "n/a"
    if cell["se"] is None:
        return f"{cell['mean']:.3f}"
    return f"{cell['mean']:.3f} ± {cell['se']:.3f}"


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _value(cell: Mapping[str, float | None]) -> str:
    if cell["mean"] is None:
        return "n/a"
    return f"{cell['mean']:.6g}" + ("" if cell["se"] is None else f" ± {cell['se']:.3g}")


def _load(values: list[float]) -> str:
    return "/".join(f"{v:.2f}" for v in values)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def render(meta: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
    """The whole report: how it was run, then per-suite tables, suggestion times and per-problem tables."""
    lines = _header(meta, summary) + _suite_tables(summary) + _problem_tables(summary)
    return "\n".join(lines) + "\n"


def _header(meta: Mapping[str, Any], summary: Mapping[str, Any]) -> list[str]:
    machine = meta["machine"]
    packages = ", ".join(f"{k} {v or 'not installed'}" for k, v in machine["packages"].items())
    lines = [
        "# tunesmith benchmark",
        "",
        f"- command: `{meta['command']}`",
        f"- date: {meta['date']}",
        f"- machine: {machine['platform']}; {machine['cpu']}; {machine['cpu_count']} CPUs; "
        f"Python {machine['python']}; {packages}; tunesmith at {machine['git'] or 'unknown revision'}",
        f"- load average (1, 5, 15 min) at start {_load(meta['load_average']['start'])}, "
        f"at end {_load(meta['load_average']['end'])}: other processes on the machine inflate timings",
        f"- {meta['trials']} trials per run, {meta['seeds']} seeds (0 to {meta['seeds'] - 1}), "
        f"{meta['jobs']} worker process(es), one thread each",
        f"- optimizers: {', '.join(label(o) for o in meta['optimizers'])}",
    ]
    lines += [f"- skipped: {label(o)}: {why}" for o, why in meta["skipped"].items()]
    return [
        *lines,
        "",
        "**Score** = (best so far - optimum) / (mean best so far of plain random search - optimum) at the "
        f"given trial count, mean ± standard error over seeds. 0 is the optimum, 1.0 is {BASELINE}, "
        "lower is better. ML optima are the best value any run found. **Rank**: optimizers ranked per "
        "problem by mean final best value (1 = best), averaged over the suite. **s/suggestion**: median "
        f"seconds per `ask` over the last {summary['last_trials']} trials of every run.",
    ]


def _suite_tables(summary: Mapping[str, Any]) -> list[str]:
    checkpoints = summary["checkpoints"]
    header = ["optimizer", *(f"score @{t}" for t in checkpoints), "mean rank", "s/suggestion"]
    lines = []
    for suite, block in summary["suites"].items():
        lines += ["", f"## Suite: {suite} ({block['problems']} problems)", ""]
        rows = [
            [
                label(o),
                *(_score(cell["scores"][str(t)]) for t in checkpoints),
                f"{cell['mean_rank']:.2f}",
                _seconds(cell["median_ask_s"]),
            ]
            for o, cell in block["optimizers"].items()
        ]
        lines += _table(header, rows)

    last = summary["last_trials"]
    lines += ["", f"## Suggestion time (median s per ask, last {last} trials, all problems)", ""]
    rows = [[label(o), _seconds(s)] for o, s in summary["timing"].items()]
    lines += _table(["optimizer", "s/suggestion"], rows)
    ratio = "n/a" if summary["bo_over_gp"] is None else f"{summary['bo_over_gp']:.2f}x"
    return [*lines, "", f"tunesmith-bo / optuna-gp suggestion time: {ratio}"]


def _problem_tables(summary: Mapping[str, Any]) -> list[str]:
    checkpoints = summary["checkpoints"]
    header = [
        "optimizer",
        *(f"score @{t}" for t in checkpoints),
        "final best",
        "rank",
        "failed trials",
        "s/suggestion",
        "s/evaluation",
    ]
    lines = ["", "## Per problem"]
    for name, block in summary["problems"].items():
        optimum = f"{block['optimum']:.6g}" + ("" if block["optimum_known"] else " (best found)")
        lines += ["", f"### {name} ({block['suite']}, {block['dims']} parameters, optimum {optimum})", ""]
        if block["saturated"]:
            saturated = ", ".join(map(str, block["saturated"]))
            lines += [f"Saturated (every random-search seed reached the optimum) at trials {saturated}.", ""]
        rows = [
            [
                label(o),
                *(_score(cell["scores"][str(t)]) for t in checkpoints),
                _value(cell["final_best"]),
                f"{cell['rank']:g}",
                str(cell["failures"]),
                _seconds(cell["median_ask_s"]),
                _seconds(cell["median_eval_s"]),
            ]
            for o, cell in block["optimizers"].items()
        ]
        lines += _table(header, rows)
    return lines

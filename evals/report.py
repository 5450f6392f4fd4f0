"""The markdown report, and the facts about the machine and software that a timing means nothing without."""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
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
    lines = _header(meta, summary) + _suite_tables(summary) + _model_table(summary) + _problem_tables(summary)
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
    if meta.get("model"):
        model = meta["model"]
        lines.append(
            f"- model in the loop ({', '.join(label(o) for o in model['optimizers'])}): {model['name']} on an "
            f"in-process llama.cpp server (xllamacpp {model['xllamacpp'] or 'not installed'}), one per worker "
            f"process, started on first use, {model['threads']} thread(s), "
            f"OMP_WAIT_POLICY={model.get('omp_wait_policy') or 'unset'}; with {meta['jobs']} worker(s) on "
            f"{machine['cpu_count']} CPUs (use --jobs 1 on a 2-core machine, so that the model does not share "
            "cores with another worker); model seconds are wall-clock and grow with the load average"
        )
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


def _pct(num: float, den: float) -> str:
    return "n/a" if not den else f"{100 * num / den:.1f}% ({num:g}/{den:g})"


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}g}"


def _model_table(summary: Mapping[str, Any]) -> list[str]:
    """Calls, tokens, latency and valid-proposal rates of the optimizers that call a model (if any ran)."""
    model = summary.get("model")
    if not model:
        return []
    rows: list[tuple[str, Any]] = [
        ("runs", lambda m: str(m["runs"])),
        ("model", lambda m: str(m["model"])),
        ("calls: propose / repair", lambda m: "{} / {}".format(*(m["calls_by_purpose"].get(p, 0) for p in _PURPOSES))),
        ("failed calls (no reply) / parse errors", lambda m: f"{m['failed_calls']} / {m['parse_errors']}"),
        ("propose replies that parsed", lambda m: _pct(m["propose_parsed"], m["propose_calls"])),
        ("items per parsed propose reply", lambda m: _num(_div(m["items_before_repair"], m["propose_parsed"]))),
        (
            "valid-proposal rate before repair (pooled)",
            lambda m: _pct(m["valid_before_repair"], m["items_before_repair"]),
        ),
        ("valid-proposal rate before repair (median run)", lambda m: _rate(m["median_run_valid_rate_before_repair"])),
        ("valid candidates after repair", lambda m: str(m["valid_candidates"])),
        ("repeated candidates (same as an earlier one)", lambda m: str(m["repeated_candidates"])),
        ("trials by proposer", lambda m: ", ".join(f"{k} {v}" for k, v in sorted(m["trials_by_proposer"].items()))),
        ("model time, total s", lambda m: f"{m['latency_s']:.1f}"),
        ("s per ask, mean over all trials (model and BO)", lambda m: _num(m.get("mean_ask_s"))),
        ("s per call: median / mean", lambda m: f"{_num(m['median_s_per_call'])} / {_num(m['s_per_call'])}"),
        (
            "s per valid candidate: pooled / median run",
            lambda m: f"{_num(m['s_per_candidate'])} / {_num(m['median_run_s_per_candidate'])}",
        ),
        (
            "tokens per call, median: prompt + completion",
            lambda m: (
                f"{_num(m['median_prompt_tokens_per_call'], 4)} + {_num(m['median_completion_tokens_per_call'], 4)}"
            ),
        ),
        ("tokens per valid candidate", lambda m: _num(m["tokens_per_candidate"], 4)),
        ("tokens, total: prompt / completion", lambda m: f"{m['prompt_tokens']} / {m['completion_tokens']}"),
        ("completion tokens per model second", lambda m: _num(m["completion_tokens_per_s"])),
    ]
    optimizers = list(model)
    reasons = []
    for o, m in model.items():
        if m.get("invalid_examples"):
            examples = "; ".join(f"`{p}`" for p in m["invalid_examples"])
            reasons += [
                "",
                f"Why items were invalid ({label(o)}, first {len(m['invalid_examples'])} distinct): {examples}",
            ]
    table = [[name, *(cell(model[o]) for o in optimizers)] for name, cell in rows]
    return [
        "",
        "## Model in the loop",
        "",
        "Over all runs of each optimizer that calls a model. **Valid-proposal rate before repair**: over the "
        "propose calls whose reply parsed as JSON, candidates valid for the space / all items in those replies. "
        "**Valid candidates after repair** add the valid items of repair replies. Seconds and tokens per valid "
        "candidate = model time or tokens / valid candidates after repair. Model time is the calls' latency, "
        "and it is part of the optimizer's s/suggestion.",
        "",
        *_table(["", *(label(o) for o in optimizers)], table),
        *reasons,
    ]


_PURPOSES = ("propose", "repair")


def _div(num: float, den: float) -> float | None:
    return num / den if den else None


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


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


def report_arguments(parser: argparse.ArgumentParser, kept: str) -> None:
    """The options every harness shares: where to work (``kept``: what stays there), where the report and the
    results go, and re-rendering a saved run."""
    add = parser.add_argument
    add("--dir", help=f"keep {kept} here (default: a temporary folder, removed after)")
    add("--out", help="write the markdown report here (it is printed in any case)")
    add("--json", help="write the JSON results here")
    add("--summarize", metavar="JSON", help="only re-render the markdown of a saved JSON; run nothing")


def run_and_report(
    run: Callable[[], Any],
    render: Callable[[Any], str],
    *,
    summarize: str | None,
    out: str | None,
    json_out: str | None,
) -> int:
    """What a harness's ``main`` does after parsing: measure (or read ``summarize``, a JSON of an earlier run), print
    the Markdown report, and write it to ``out`` and the results to ``json_out``.

    While measuring, SIGTERM exits through the harness's ``finally`` blocks (``timeout`` or ``kill`` then kills
    everything it started) instead of leaving its processes behind.
    """
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        results = json.loads(Path(summarize).read_text()) if summarize else run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    markdown = render(results)
    print(markdown)
    if out:
        Path(out).write_text(markdown)
    if json_out and not summarize:
        Path(json_out).write_text(json.dumps(results, indent=1, default=str) + "\n")
    return 0

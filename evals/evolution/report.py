"""The markdown report, rendered from the JSON alone (so ``--summarize`` re-renders a saved run exactly)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from evals.evolution.stats import REASONS

CODE_RUNS = ("code-speedup", "nas-code")
ARCH_RUNS = ("nas-space-auto", "nas-space-bo", "nas-code")

DEFINITIONS = (
    "one seed per run (the jobs' own, `seed = 0`), on 2 cores: a single run's best is a sample, not a mean",
    "model s per proposal: all `evolve` calls' latency / the trials after trial 0 (the starting program needs "
    "no call); proposals are prefetched while a trial runs, so this overlaps evaluation: the run's wall s per "
    "trial is what a user waits",
    "wall s: process start to exit, the local model server's start included; span: first trial start to last "
    "trial end; busy / span > 1 means model and evaluation overlapped",
    "evaluation s: a trial's start to end, every stage in its sandbox; stage s: the `<stage>_seconds` metric "
    "of the trials that passed that stage",
    "an `evolve` call applied when its stored error is empty; did not apply = no edit read, or its SEARCH text "
    "not found; already tried = the program equals one tried before (after whitespace and comments); other = "
    "no reply (a timeout, a server error) or anything else",
    "edited trials: trials whose program came from an applied edit (not trial 0, not the partner's fallback)",
    "speed-up: trial 0's seconds / the best complete trial's seconds; *over its fastest run*: the fastest of every "
    "complete trial that ran the starting program (trial 0, and the partner's fallbacks that re-ran it) / the "
    "best: timing noise on a shared machine moves one program's time by tens of percent",
    "best is the starting program: the best trial's program equals trial 0's after collapsing whitespace (an "
    "edit that only adds code around an unchanged function is not caught: read the program)",
    "best by proposer: the best value of the trials each proposer made (`evolve`/`llm` = the model's; `bo` = "
    "the partner's or BO's)",
)


def cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}g}"


def pct(part: int, whole: int) -> str:
    return "n/a" if not whole else f"{100 * part / whole:.0f}% ({part}/{whole})"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], text: Sequence[int] = (0,)) -> list[str]:
    """A markdown table; the columns in ``text`` are aligned left, the others (numbers) right."""
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i in text else "---:" for i in range(len(header))) + "|",
        *("| " + " | ".join(cell(c) for c in row) + " |" for row in rows),
    ]


def _summaries(results: Mapping[str, Any], names: Sequence[str]) -> dict[str, Mapping[str, Any]]:
    return {n: results["runs"][n]["summary"] for n in names if "summary" in results["runs"].get(n, {})}


def _header(results: Mapping[str, Any]) -> list[str]:
    from evals.overhead import run_header  # lazily: it imports tunesmith

    meta = results["meta"]
    runs = ", ".join(
        f"{name} {entry['process']['wall_s']:.0f} s" + (" (cut at the cap)" if entry["process"]["cut_at_cap"] else "")
        for name, entry in results["runs"].items()
    )
    sizes = results["sizes"]
    lines = [
        *run_header("tunesmith code evolution and architecture search", meta),
        f"- sizes: code-speedup {sizes['trials_speedup']} trials, nas-code and each nas-space run "
        f"{sizes['trials_nas']} trials, one seed; a run is stopped after {sizes['cap_s']:.0f} s",
        f"- time per run: {runs or 'none'}" + (f" (total {meta['seconds']:.0f} s)" if "seconds" in meta else ""),
    ]
    for name, entry in results["runs"].items():
        process = entry["process"]
        lines.append(f"- {name}: `{' '.join(process['argv'])}` in a copy of `examples/{entry['example']}`")
        if process["cut_at_cap"]:
            after = process.get("exit_s_after_sigterm")
            lines.append(
                "  - stopped at the cap with SIGTERM; "
                + (
                    f"it exited {after:.0f} s later (status {process['exit']})"
                    if after is not None
                    else "it was still running after the grace time and was killed (SIGKILL)"
                )
            )
        elif process["exit"] != 0:
            lines.append(f"  - exit {process['exit']}: {cell(process['output_tail'].strip().splitlines()[-1:])}")
        if "error" in entry:
            lines.append(f"  - no study to read: {cell(entry['error'])}")
    return lines


def _candidate_table(results: Mapping[str, Any]) -> list[str]:
    runs = _summaries(results, CODE_RUNS)
    if not runs:
        return []
    rows: list[tuple[str, Callable[[Mapping[str, Any]], str]]] = [
        ("trials (complete / failed / interrupted)", _trial_counts),
        ("trials by proposer", lambda s: ", ".join(f"{k} {v}" for k, v in sorted(s["by_proposer"].items()))),
        ("run wall s (model server start included)", lambda s: num(s["wall_s"])),
        ("**wall s per trial**", lambda s: num(s["wall_s_per_trial"])),
        ("span s per trial (first trial start to last end)", lambda s: num(s["span_s_per_trial"])),
        ("`evolve` model calls", lambda s: str(s["edits"]["calls"])),
        (
            "model s per call: median / mean / max",
            lambda s: " / ".join(num(s["edits"][k]) for k in ("latency_s_median", "latency_s_mean", "latency_s_max")),
        ),
        ("**model s per proposal** (calls' latency / trials after 0)", lambda s: num(s["model_s_per_proposal"])),
        ("model s per applied edit", lambda s: num(s["model_s_per_applied_edit"])),
        (
            "tokens per call, median: prompt + completion",
            lambda s: " + ".join(num(s["edits"][k], 4) for k in ("prompt_tokens_median", "completion_tokens_median")),
        ),
        ("**evaluation s per trial**: median / mean", lambda s: f"{num(s['eval_s_median'])} / {num(s['eval_s_mean'])}"),
        ("stage s, median (trials that passed it)", lambda s: f"{s['stage']}: {num(s['stage_s_median'])}"),
        ("(model + evaluation s) / span", lambda s: num(s["busy_over_span"])),
    ]
    lines = [
        "",
        "## Seconds per code candidate",
        "",
        *table(["", *runs], [[name, *(show(s) for s in runs.values())] for name, show in rows]),
    ]
    boxes = results.get("sandbox") or []
    if boxes:
        lines += [
            "",
            f"Sandbox overhead, measured apart: `tools.sandbox.Sandbox` over the example folder, enter (copy) + "
            f"`run([python, '-c', 'pass'])` + exit (remove), against the same command run plainly with subprocess; "
            f"medians of {boxes[0]['repeats']} repetitions, milliseconds.",
            "",
            *table(
                ["folder", "plain", "enter", "run", "exit", "sandbox total", "**overhead**", "network cut"],
                [
                    [
                        f"examples/{b['folder']}",
                        *(f"{1000 * b[k]:.0f}" for k in ("plain_s", "enter_s", "run_s", "exit_s", "sandbox_s")),
                        f"**{1000 * b['overhead_s']:.0f}**",
                        "yes" if b["network_isolated"] else "no",
                    ]
                    for b in boxes
                ],
            ),
        ]
        notes = sorted({note for b in boxes for note in b["notes"]})
        if notes:
            lines += ["", "Not enforced here: " + " ".join(notes)]
    return lines


def _trial_counts(s: Mapping[str, Any]) -> str:
    states = s["states"]
    return f"{s['trials']} ({states.get('complete', 0)} / {states.get('failed', 0)} / {s['interrupted']})"


def _edits_table(results: Mapping[str, Any]) -> list[str]:
    runs = _summaries(results, CODE_RUNS)
    if not runs:
        return []
    rows = []
    for name, s in runs.items():
        e = s["edits"]
        rows.append(
            [
                name,
                str(e["calls"]),
                f"**{pct(e['applied'], e['calls'])}**",
                *(str(e["rejected"][r]) for r in REASONS),
                str(s["edited_trials"]),
                str(s["edited_passed_stage"]),
                str(s["edited_complete"]),
                str(s["edited_improved"]),
            ]
        )
    lines = [
        "",
        "## Share of edits that apply",
        "",
        *table(
            [
                "study",
                "`evolve` calls",
                "applied",
                *REASONS,
                "edited trials",
                "passed the stage",
                "complete",
                "improved the best",
            ],
            rows,
        ),
    ]
    for name, s in runs.items():
        for reason, examples in s["edits"]["examples"].items():
            if examples:
                lines += ["", f"{name}, {reason}: " + "; ".join(f"`{cell(e)}`" for e in examples)]
        if s["failure_examples"]:
            lines += ["", f"{name}, failed trials: " + "; ".join(f"`{cell(e)}`" for e in s["failure_examples"])]
    return lines


def _speedup(results: Mapping[str, Any]) -> list[str]:
    s = _summaries(results, ["code-speedup"]).get("code-speedup")
    if s is None:
        return []
    base, best = s["baseline"], s["best"]
    again = s.get("speedup_vs_best_start_run")
    same = s.get("best_is_start_program")
    row = [
        str(s["trials"]),
        num(base["value"], 4) if base else "n/a",
        ", ".join(num(v, 4) for v in s.get("start_program_values", [])) or "n/a",
        f"{num(best['value'], 4)} (trial {best['number']}, {best['proposer']})" if best else "n/a",
        "n/a" if same is None else ("yes" if same else "no"),
        "n/a" if s["speedup"] is None else f"**{s['speedup']:.2f}x**",
        "n/a" if again is None else f"{again:.2f}x",
        f"{s['failed_at_stage']} of {s['trials']}",
        str(s["failed_after_stage"]),
    ]
    header = [
        "trials",
        "baseline s (trial 0)",
        "every run of the starting program, s",
        "best s",
        "best is the starting program",
        "speed-up",
        "over its fastest run",
        "failed the tests stage",
        "failed after it",
    ]
    return ["", "## Speed-up found (code-speedup)", "", *table(header, [row])]


def _architecture(results: Mapping[str, Any]) -> list[str]:
    runs = _summaries(results, ARCH_RUNS)
    if not runs:
        return []
    rows = []
    for name, s in runs.items():
        best, base = s["best"], s["baseline"]
        shown = ""
        if best is not None:
            shown = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in best["params"].items())
        rows.append(
            [
                name,
                results["runs"][name]["proposer"],
                str(s["trials"]),
                f"**{num(best['value'], 4)}**" if best else "n/a",
                str(best["number"]) if best else "n/a",
                f"{best['metrics']['params']:,.0f}" if best and "params" in best["metrics"] else "n/a",
                num(base["value"], 4) if base else "n/a",
                str(s["failed"]),
                num(s["model_s_total"]),
                ", ".join(f"{p} {v:.4g}" for p, v in s.get("best_by_proposer", {}).items()),
                shown if name != "nas-code" else "(a program)",
            ]
        )
    header = [
        "run",
        "proposer",
        "trials",
        "best accuracy",
        "at trial",
        "params of best",
        "trial 0",
        "failed",
        "model s",
        "best by proposer",
        "best point",
    ]
    return ["", "## Architecture search: best validation accuracy", "", *table(header, rows, text=(0, 1, 9, 10))]


def render(results: Mapping[str, Any]) -> str:
    lines = [
        *_header(results),
        *_candidate_table(results),
        *_edits_table(results),
        *_speedup(results),
        *_architecture(results),
        "",
        "## How to read it",
        "",
        *(f"- {d}" for d in DEFINITIONS),
    ]
    return "\n".join(lines) + "\n"

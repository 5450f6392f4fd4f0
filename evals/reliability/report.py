"""The report: a fault-injection table (one row per check), the per-behaviour model table, and the run's facts.

Rendered from the JSON alone, so that ``--summarize`` re-renders a saved run exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from evals.reliability.common import Row

DEFINITIONS = (
    "cases: what one check was tried on (kills, repeats, runs, points, behaviours, planted values); "
    "held + broken = cases",
    "worst: the worst figure seen, in the unit shown (a total for counts of leftovers, else the worst case)",
    "a finished trial is complete or failed, not interrupted; a duplicate is a second finished evaluation "
    "of the same parameters (re-running an interrupted trial's point is not one)",
    "kill9: a completed trial is lost when it is not complete, with the same parameters and value, after the "
    "next kill; strays and temp folders are counted after the final run, and charged to the kill at which "
    "their trial was running",
    "models: held = exit 0 within wall time + grace, measured from the start of the process; started late = "
    "trials that began more than the wall time after the first trial began (certainly after the run's wall time)",
    "secrets: a case is a planted value, broken where it occurs at least once",
)


def cell(text: object) -> str:
    """Text safe inside a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(rows: Sequence[Row]) -> list[str]:
    lines = [
        "| scenario | check | cases | held | broken | worst | notes |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for r in rows:
        broken = f"**{r.broken}**" if r.broken else "0"
        lines.append(
            f"| {r.scenario} | {cell(r.check)} | {r.cases} | {r.held} | {broken} | {cell(r.worst_text)} "
            f"| {cell(r.notes)} |"
        )
    return lines


def _header(results: Mapping[str, Any]) -> list[str]:
    from evals.overhead import run_header  # lazily, as the CLI takes its metadata: it imports tunesmith

    seconds = {name: s["seconds"] for name, s in results["scenarios"].items()}
    timing = ", ".join(f"{name} {s:.0f} s" for name, s in seconds.items())
    return [
        *run_header("tunesmith reliability (fault injection)", results["meta"]),
        f"- sizes: {results['sizes']}",
        f"- time per scenario: {timing} (total {sum(seconds.values()):.0f} s)",
    ]


def _models_table(models: Mapping[str, Any]) -> list[str]:
    lines = [
        "",
        f"## models: each behaviour (wall time {models['wall_time_s']:g} s, held within "
        f"{models['wall_time_s'] + models['grace_s']:g} s)",
        "",
        "| behaviour | the server | exit | seconds | held | requests | trials | started late | notes |",
        "|---|---|---:|---:|---|---:|---:|---:|---|",
    ]
    for b in models["behaviours"]:
        if not b["available"]:
            lines.append(f"| {b['behaviour']} | {cell(b['does'])} | - | - | - | - | - | - | behaviour not available |")
            continue
        rc = "killed" if b["rc"] is None else b["rc"]
        held = "yes" if b["held"] else "**no**"
        lines.append(
            f"| {b['behaviour']} | {cell(b['does'])} | {rc} | {b['seconds']:.1f} | {held} | {b['requests']} "
            f"| {b['trials']} | {b.get('started_late', '-')} | {cell(b['error'])} |"
        )
    return lines


def render(results: Mapping[str, Any]) -> str:
    rows = [Row.from_json(r) for r in results["rows"]]
    broken = [r for r in rows if r.broken]
    lines = [*_header(results), "", *table(rows), ""]
    lines.append(
        f"{len(broken)} of {len(rows)} checks broke ({sum(r.broken for r in rows)} broken cases of "
        f"{sum(r.cases for r in rows)})."
        if broken
        else f"Every check held ({sum(r.cases for r in rows)} cases)."
    )
    models = results["scenarios"].get("models", {}).get("details", {})
    if models.get("behaviours"):
        lines += _models_table(models)
    lines += ["", "## How to read it", "", *(f"- {d}" for d in DEFINITIONS)]
    return "\n".join(lines) + "\n"
